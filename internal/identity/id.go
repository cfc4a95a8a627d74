package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// TrustDomain is the SPIFFE trust domain of every payonce identity. A
// certificate naming another domain is not a payonce party, even when a CA
// payonce trusts signed it.
const TrustDomain = "payonce"

// ID is an internal party: which service it is and which instance of it.
type ID struct {
	// Service is the party's kind: orders, payments, coordinator, bank,
	// nats, console, or admin for an operator.
	Service string
	// Instance tells instances of one service apart (orders-1, c2).
	Instance string
}

// Well-known services. Instances of orders, payments and coordinator are
// numbered by the deployment; the others have one instance.
const (
	Orders      = "orders"
	Payments    = "payments"
	Coordinator = "coordinator"
	Bank        = "bank"
	NATS        = "nats"
	// Console is the console's page server (services/console): it reads
	// the coordinators' status and membership, nothing more.
	Console = "console"
	// Admin is an operator's identity: the CLI and the coordinator's
	// cluster-admin routes accept it.
	Admin = "admin"
)

// AdminCLI is the identity the operator's CLI presents.
var AdminCLI = ID{Service: Admin, Instance: "cli"}

// name is what a service or instance name may be: a DNS label, so it fits
// in host names, file names and NATS user names without escaping.
var name = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate reports whether id's parts are valid names.
func (id ID) Validate() error {
	if !name.MatchString(id.Service) {
		return fmt.Errorf("identity service %q: want a lower-case DNS label", id.Service)
	}
	if !name.MatchString(id.Instance) {
		return fmt.Errorf("identity instance %q: want a lower-case DNS label", id.Instance)
	}
	return nil
}

// URI is the identity as it appears in a certificate's URI SAN.
func (id ID) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + id.Service + "/" + id.Instance}
}

// String is the identity's URI, e.g. spiffe://payonce/orders/orders-1.
// It is also the NATS user name the server maps the certificate to.
func (id ID) String() string { return id.URI().String() }

// FileName is the base name of the party's certificate and key files: the
// instance when it already names the service ("orders-1", "bank"),
// otherwise service-instance ("coordinator-c1").
func (id ID) FileName() string {
	if id.Instance == id.Service || strings.HasPrefix(id.Instance, id.Service+"-") {
		return id.Instance
	}
	return id.Service + "-" + id.Instance
}

// Parse reads an identity URI.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", s, err)
	}
	return fromURI(u)
}

func fromURI(u *url.URL) (ID, error) {
	if u.Scheme != "spiffe" || u.Host != TrustDomain || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return ID{}, fmt.Errorf("identity %q: want spiffe://%s/<service>/<instance>", u, TrustDomain)
	}
	service, instance, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok {
		return ID{}, fmt.Errorf("identity %q: want spiffe://%s/<service>/<instance>", u, TrustDomain)
	}
	id := ID{Service: service, Instance: instance}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", u, err)
	}
	return id, nil
}

// ErrNoIdentity means a certificate (or a connection) carries no payonce
// identity.
var ErrNoIdentity = errors.New("no payonce identity")

// Of returns the identity in cert: its one URI SAN. A certificate with no
// URI SAN, with more than one (SPIFFE allows exactly one), or naming
// another trust domain has no payonce identity.
func Of(cert *x509.Certificate) (ID, error) {
	if len(cert.URIs) != 1 {
		return ID{}, fmt.Errorf("%w: certificate %q has %d URI SANs, want 1", ErrNoIdentity, cert.Subject.CommonName, len(cert.URIs))
	}
	id, err := fromURI(cert.URIs[0])
	if err != nil {
		return ID{}, fmt.Errorf("%w: %w", ErrNoIdentity, err)
	}
	return id, nil
}

// Peer returns the identity the other side of a TLS connection proved. It
// trusts state only as far as the TLS configuration verified the chain:
// use it with ServerConfig or ClientConfig, which always verify.
func Peer(state *tls.ConnectionState) (ID, error) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return ID{}, fmt.Errorf("%w: no verified client certificate", ErrNoIdentity)
	}
	return Of(state.PeerCertificates[0])
}

// Caller returns the identity of the party that sent r over mutual TLS.
func Caller(r *http.Request) (ID, error) { return Peer(r.TLS) }
