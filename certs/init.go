// Package certs makes and loads the certificates pgwarden serves: a dev CA
// with server and client certificates for `pgwarden certs init`, and the
// TLS configuration built from [tls].
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// DefaultHosts are the names a dev server certificate is valid for.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Issued is a certificate with its key, ready to sign or to write.
type Issued struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	DER  []byte
}

// Template describes a certificate to issue.
type Template struct {
	CommonName string
	Hosts      []string // DNS names and IP addresses (server certificates)
	Client     bool     // extended key usage client auth instead of server auth
	NotBefore  time.Time
	NotAfter   time.Time
}

// NewCA makes a self-signed CA valid for ten years.
func NewCA(name string) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Key: key, DER: der}, nil
}

// Issue signs a leaf certificate with ca. Zero times mean "from an hour
// ago for two years".
func (ca *Issued) Issue(t Template) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = time.Now().Add(-time.Hour)
	}
	if t.NotAfter.IsZero() {
		t.NotAfter = time.Now().AddDate(2, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: t.CommonName},
		NotBefore:    t.NotBefore,
		NotAfter:     t.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if t.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, h := range t.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Key: key, DER: der}, nil
}

// Write stores the certificate as base.crt and its key as base.key (mode
// 0600) in dir.
func (i *Issued) Write(dir, base string) error {
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.DER})
	keyDER, err := x509.MarshalPKCS8PrivateKey(i.Key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := atomicfile.Write(filepath.Join(dir, base+".crt"), certPEM, 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, base+".key"), keyPEM, 0o600)
}

var clientNameRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]+$`)

// Init writes a dev CA (ca.crt, ca.key), a server certificate for hosts
// (server.crt, server.key) and one client certificate per name (NAME.crt,
// NAME.key, CN = NAME) into dir.
func Init(dir string, hosts, clients []string) error {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	for _, c := range clients {
		if !clientNameRE.MatchString(c) || c == "ca" || c == "server" {
			return fmt.Errorf("client name %q: use letters, digits, _ . @ - (and not ca or server)", c)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); err == nil {
		return errors.New(filepath.Join(dir, "ca.key") + " exists: refusing to replace a CA (remove it first)")
	}
	ca, err := NewCA("pgwarden dev CA")
	if err != nil {
		return err
	}
	if err := ca.Write(dir, "ca"); err != nil {
		return err
	}
	srv, err := ca.Issue(Template{CommonName: hosts[0], Hosts: hosts})
	if err != nil {
		return err
	}
	if err := srv.Write(dir, "server"); err != nil {
		return err
	}
	for _, name := range clients {
		c, err := ca.Issue(Template{CommonName: name, Client: true})
		if err != nil {
			return err
		}
		if err := c.Write(dir, name); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
