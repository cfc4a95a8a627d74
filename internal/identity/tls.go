package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// Allow decides whether a verified peer may connect at all. Finer rules
// (which lock, which subject) belong to what the connection reaches; this
// is the coarse door: "only payments instances call the bank".
type Allow func(ID) error

// AllowServices admits the listed services' instances only.
func AllowServices(services ...string) Allow {
	return func(id ID) error {
		for _, s := range services {
			if id.Service == s {
				return nil
			}
		}
		return fmt.Errorf("identity %s may not connect here (want one of %v)", id, services)
	}
}

// ServerConfig is the TLS configuration of a server inside the stack:
// TLS 1.3, its own certificate from f (re-read when the files change), and
// a client certificate required, verified against f.CA, carrying a payonce
// identity that allow admits (nil admits every identity the CA vouches
// for). Handlers read the caller with Caller.
func ServerConfig(f Files, allow Allow) (*tls.Config, error) {
	pool, err := loadPool(f.CA)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{files: f}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get()
		},
		// Runs after the chain is verified: a certificate from the CA
		// that names no payonce identity, or one not admitted, is refused
		// during the handshake, before any request is read.
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := Peer(&cs)
			if err != nil {
				return err
			}
			if allow != nil {
				return allow(id)
			}
			return nil
		},
	}, nil
}

// APIServerConfig is ServerConfig for an HTTP API that answers callers
// without a certificate itself: a client certificate is asked for and, when
// given, verified against f.CA and required to carry a payonce identity
// (a bad one fails the handshake), but a connection without one is
// accepted, so the API can answer it 401 problem+json and the probes
// (/healthz, /readyz) stay reachable to a container's health check. Every
// route that acts for a caller must then check Caller itself.
func APIServerConfig(f Files) (*tls.Config, error) {
	cfg, err := ServerConfig(f, nil)
	if err != nil {
		return nil, err
	}
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		_, err := Peer(&cs)
		return err
	}
	return cfg, nil
}

// ClientConfig is the TLS configuration of a client inside the stack: it
// presents its own certificate from f and trusts servers whose certificate
// f.CA signed for the host it dials. want, when not empty, also requires the
// server to be one of those services (payments only talks to a bank that
// proves it is the bank).
func ClientConfig(f Files, want ...string) (*tls.Config, error) {
	pool, err := loadPool(f.CA)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{files: f}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get()
		},
	}
	if len(want) > 0 {
		allow := AllowServices(want...)
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			id, err := Peer(&cs)
			if err != nil {
				return err
			}
			return allow(id)
		}
	}
	return cfg, nil
}

// PeerClientConfig is ClientConfig for dialling a peer found at an address
// rather than by a name its certificate carries: a Raft node, or another
// instance of the same service at the address it registered in the
// coordinator's membership. Containers get their IP addresses after their
// certificates were made, so the host name dialled is not checked; the
// server is authenticated by what identifies it instead, a chain to f.CA and
// an identity of one of the services in want (at least one is required: a
// peer is always someone in particular).
func PeerClientConfig(f Files, want ...string) (*tls.Config, error) {
	if len(want) == 0 {
		return nil, errors.New("identity: a peer client must name the services it accepts")
	}
	cfg, err := ClientConfig(f, want...)
	if err != nil {
		return nil, err
	}
	return ByIdentity(cfg), nil
}

// ByIdentity returns a copy of client that authenticates the server by its
// certificate chain to client.RootCAs and client's own identity check
// (VerifyConnection), and not by the host name dialled. Only the host-name
// match is dropped: a certificate from another CA, expired, or of another
// party still fails the handshake. client.RootCAs must be set (never the
// system's roots: only the stack's CA vouches for a party).
func ByIdentity(client *tls.Config) *tls.Config {
	cfg := client.Clone()
	checkIdentity := client.VerifyConnection
	cfg.InsecureSkipVerify = true // the chain is verified below, against RootCAs
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("identity: the peer presented no certificate")
		}
		if client.RootCAs == nil {
			return errors.New("identity: no CA to verify the peer against")
		}
		opts := x509.VerifyOptions{
			Roots:         client.RootCAs,
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		chains, err := cs.PeerCertificates[0].Verify(opts)
		if err != nil {
			return fmt.Errorf("identity: the peer's certificate: %w", err)
		}
		// The identity check reads the verified chains, which the TLS stack
		// left empty when it skipped its own verification.
		cs.VerifiedChains = chains
		if checkIdentity != nil {
			return checkIdentity(cs)
		}
		return nil
	}
	return cfg
}

func loadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("trusted CA: %w", err)
	}
	pool := x509.NewCertPool()
	// A file may hold several CAs: during a CA rotation it holds the old
	// and the new one, so parties with either kind of leaf are trusted.
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("trusted CA %s: no PEM certificate in it", caFile)
	}
	return pool, nil
}

// keyPair is a certificate and key read from files, read again when either
// file's modification time changes, so rotating a certificate is writing
// new files (payonce-certs does it atomically) and nothing else.
type keyPair struct {
	files Files

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

func (k *keyPair) get() (*tls.Certificate, error) {
	certInfo, err := os.Stat(k.files.Cert)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	keyInfo, err := os.Stat(k.files.Key)
	if err != nil {
		return nil, fmt.Errorf("certificate key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && certInfo.ModTime().Equal(k.certMod) && keyInfo.ModTime().Equal(k.keyMod) {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.files.Cert, k.files.Key)
	if err != nil {
		if k.cert != nil {
			// Caught between the new key and the new certificate being
			// written: keep the pair that worked until both are there.
			return k.cert, nil
		}
		return nil, fmt.Errorf("load %s: %w", k.files.Cert, err)
	}
	if _, err := Of(cert.Leaf); err != nil {
		return nil, fmt.Errorf("load %s: %w", k.files.Cert, err)
	}
	k.cert, k.certMod, k.keyMod = &cert, certInfo.ModTime(), keyInfo.ModTime()
	return k.cert, nil
}

// ErrIncomplete means some but not all of a party's TLS files were named.
var ErrIncomplete = errors.New("TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE go together: set all three or none")

// FilesFromEnv reads a process's own credentials from TLS_CERT_FILE,
// TLS_KEY_FILE and TLS_CA_FILE. ok is false when none is set (TLS off).
func FilesFromEnv(getenv func(string) string) (f Files, ok bool, err error) {
	f = Files{Cert: getenv("TLS_CERT_FILE"), Key: getenv("TLS_KEY_FILE"), CA: getenv("TLS_CA_FILE")}
	switch {
	case f.Cert == "" && f.Key == "" && f.CA == "":
		return Files{}, false, nil
	case f.Cert == "" || f.Key == "" || f.CA == "":
		return Files{}, false, ErrIncomplete
	}
	return f, true, nil
}

// PeerTransport is an HTTP transport for calls to other instances found in
// the coordinator's membership: it presents f's certificate and accepts a
// server only by CA chain and an identity of one of the services in want
// (PeerClientConfig), whatever address it was dialled at.
func PeerTransport(f Files, want ...string) (*http.Transport, error) {
	cfg, err := PeerClientConfig(f, want...)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = cfg
	return transport, nil
}

// HTTPClient is an HTTP client that presents f's certificate and trusts
// servers f.CA signed that prove one of the services in want (any payonce
// party when want is empty). timeout is the client's whole-request timeout
// (0: none, for long polls and callers that set their own deadlines).
func HTTPClient(f Files, timeout time.Duration, want ...string) (*http.Client, error) {
	cfg, err := ClientConfig(f, want...)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = cfg
	return &http.Client{Transport: transport, Timeout: timeout}, nil
}
