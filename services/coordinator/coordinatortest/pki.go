package coordinatortest

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// PKI is a throwaway CA in a test's temporary directory and the
// certificates it issued, each for 127.0.0.1 and localhost so that it
// serves on loopback too.
type PKI struct {
	t   testing.TB
	dir string
	ca  *identity.CA

	mu     sync.Mutex
	issued map[identity.ID]identity.Files
}

// NewPKI makes a new CA.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := identity.NewCA("payonce test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	return &PKI{t: t, dir: dir, ca: ca, issued: map[identity.ID]identity.Files{}}
}

// Dir is the directory of ca.crt and every party's files.
func (p *PKI) Dir() string { return p.dir }

// Issue makes id's certificate (once) and returns its files.
func (p *PKI) Issue(id identity.ID) identity.Files {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.issued[id]; ok {
		return f
	}
	f, err := p.ca.WriteParty(p.dir, identity.Party{ID: id, Hosts: []string{"127.0.0.1", "localhost"}}, time.Now(), time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	p.issued[id] = f
	return f
}

// Files is Issue: the files of id's certificate.
func (p *PKI) Files(id identity.ID) identity.Files { return p.Issue(id) }

// Client is an HTTP client presenting id's certificate and trusting the
// coordinator nodes of this CA.
func (p *PKI) Client(id identity.ID) *http.Client {
	p.t.Helper()
	return must(p.t, func() (*http.Client, error) {
		return identity.HTTPClient(p.Issue(id), 30*time.Second, identity.Coordinator)
	})
}

// AnonymousClient trusts this CA's servers but presents no certificate.
func (p *PKI) AnonymousClient() *http.Client {
	p.t.Helper()
	f := p.Issue(identity.ID{Service: identity.Coordinator, Instance: "c1"})
	cfg := must(p.t, func() (*tls.Config, error) { return identity.ClientConfig(f, identity.Coordinator) })
	cfg.GetClientCertificate = nil
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = cfg
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
}

// RaftTLS is the Raft transport's TLS for the node whose files are self.
func (p *PKI) RaftTLS(self identity.Files) *raftnode.TLS {
	p.t.Helper()
	return &raftnode.TLS{
		Server: must(p.t, func() (*tls.Config, error) {
			return identity.ServerConfig(self, identity.AllowServices(identity.Coordinator))
		}),
		Client: must(p.t, func() (*tls.Config, error) { return identity.ClientConfig(self, identity.Coordinator) }),
	}
}

func must[T any](t testing.TB, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// quietTLSLog drops net/http's "TLS handshake error" lines: the attack
// tests make them on purpose.
var quietTLSLog = log.New(io.Discard, "", 0)
