package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Default lifetimes of what NewCA and Issue make. A leaf lives long enough
// for a development stack to run for weeks, short enough that rotation is a
// habit; the CA outlives many rotations.
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultLeafValidity = 90 * 24 * time.Hour
)

// clockSkew back-dates NotBefore so a certificate issued now is accepted by
// a peer whose clock is a little behind.
const clockSkew = 5 * time.Minute

// CA is a certificate authority: the development CA payonce-certs makes,
// or any CA whose key a deployment hands over. Production deployments
// bring their own CA (and usually never give its key to payonce at all:
// they issue the same kind of certificates with their own tools).
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA with an ECDSA P-256 key, valid from now for
// validity.
func NewCA(commonName string, now time.Time, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"payonce"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The dev CA signs leaves only, never other CAs.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		SubjectKeyId:   keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Party is what a certificate is issued for: an identity, and the host
// names and addresses it serves on (a server certificate must name the host
// its clients dial; a client-only party needs none).
type Party struct {
	ID    ID
	Hosts []string
}

// Issued is a leaf certificate and its private key, PEM-encoded.
type Issued struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// Issue signs a certificate for party, valid from now for validity, usable
// as both TLS server and client (every party is both: an instance serves
// its API and calls NATS and the coordinator).
func (ca *CA) Issue(party Party, now time.Time, validity time.Duration) (Issued, error) {
	if err := party.ID.Validate(); err != nil {
		return Issued{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, fmt.Errorf("key for %s: %w", party.ID, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return Issued{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The common name is for people reading the certificate; the
		// identity is the URI SAN.
		Subject:        pkix.Name{CommonName: party.ID.FileName(), Organization: []string{"payonce"}},
		NotBefore:      now.Add(-clockSkew),
		NotAfter:       now.Add(validity),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:           []*url.URL{party.ID.URI()},
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	for _, h := range party.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Issued{}, fmt.Errorf("certificate for %s: %w", party.ID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Issued{}, fmt.Errorf("certificate for %s: %w", party.ID, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Issued{}, fmt.Errorf("key for %s: %w", party.ID, err)
	}
	return Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert,
	}, nil
}

// CertPEM is the CA's certificate, PEM-encoded: the ca.crt every party
// trusts.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// The files a directory of credentials holds (see WriteCA, WriteParty).
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Files names one party's credentials on disk.
type Files struct {
	Cert, Key, CA string
}

// PartyFiles returns where WriteParty puts id's credentials in dir.
func PartyFiles(dir string, id ID) Files {
	base := filepath.Join(dir, id.FileName())
	return Files{Cert: base + ".crt", Key: base + ".key", CA: filepath.Join(dir, CACertFile)}
}

// WriteCA writes ca.crt (readable by all) and ca.key (owner only) to dir.
func (ca *CA) WriteCA(dir string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644)
}

// WriteParty issues party's certificate and writes it with its key to dir
// (names from PartyFiles). The files are replaced atomically, so a running
// process that re-reads them sees the old pair or the new one, never half.
func (ca *CA) WriteParty(dir string, party Party, now time.Time, validity time.Duration) (Files, error) {
	issued, err := ca.Issue(party, now, validity)
	if err != nil {
		return Files{}, err
	}
	f := PartyFiles(dir, party.ID)
	// Key first: a reader that sees the new certificate must find its key.
	if err := writeFile(f.Key, issued.KeyPEM, 0o600); err != nil {
		return Files{}, err
	}
	if err := writeFile(f.Cert, issued.CertPEM, 0o644); err != nil {
		return Files{}, err
	}
	return f, nil
}

// LoadCA reads a CA written by WriteCA.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	certBlock, _ := pem.Decode(certPEM)
	keyBlock, _ := pem.Decode(keyPEM)
	if certBlock == nil || keyBlock == nil {
		return nil, fmt.Errorf("load CA from %s: not PEM", dir)
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("load CA key: not an ECDSA key")
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load CA from %s: %s does not belong to %s", dir, CAKeyFile, CACertFile)
	}
	return &CA{Cert: cert, Key: key}, nil
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

func keyID(pub *ecdsa.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return sum[:20]
}
