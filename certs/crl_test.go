package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

// clientChain reads NAME.crt of dir as a client would send it.
func clientChain(t *testing.T, dir, name string) []*x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{c}
}

func loadWithCRL(t *testing.T, dir, caFile, crlFile string) *Material {
	t.Helper()
	m, err := Load(&config.TLS{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: caFile, CRLFile: crlFile})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestARevokedClientCertificateIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, []string{"alice", "bob"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := Revoke(dir, []string{filepath.Join(dir, "alice.crt")}, now); err != nil {
		t.Fatal(err)
	}
	// Revoking again, and renewing, keep the one entry.
	if _, err := Revoke(dir, []string{filepath.Join(dir, "alice.crt")}, now); err != nil {
		t.Fatal(err)
	}
	serials, err := Revoke(dir, nil, now)
	if err != nil || len(serials) != 1 {
		t.Fatalf("renewal: %v %v", serials, err)
	}
	m := loadWithCRL(t, dir, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.crl"))
	if _, err := m.VerifyClient(clientChain(t, dir, "alice"), now); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("alice's revoked certificate: %v", err)
	}
	if _, err := m.VerifyClient(clientChain(t, dir, "bob"), now); err != nil {
		t.Fatalf("bob's certificate: %v", err)
	}
	// The list lapses after a year: then it refuses every certificate,
	// as PostgreSQL's ssl_crl_file does.
	if _, err := m.VerifyClient(clientChain(t, dir, "bob"), now.Add(366*24*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("bob under an expired list: %v", err)
	}
	// Without the list the same material takes alice.
	if _, err := loadWithCRL(t, dir, filepath.Join(dir, "ca.crt"), "").VerifyClient(clientChain(t, dir, "alice"), now); err != nil {
		t.Fatalf("alice without crl_file: %v", err)
	}
}

// A CA of client_ca_file with no list of its own in crl_file refuses its
// certificates, and so does a list whose signature is not its issuer's:
// a list nobody signed must not count as "nothing revoked".
func TestACertificateWithoutItsIssuersListIsRefused(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	if err := Init(dir, nil, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	if err := Init(other, nil, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := Revoke(dir, nil, now); err != nil {
		t.Fatal(err)
	}
	both := filepath.Join(t.TempDir(), "cas.crt")
	a, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	b, _ := os.ReadFile(filepath.Join(other, "ca.crt"))
	if err := os.WriteFile(both, append(a, b...), 0o644); err != nil {
		t.Fatal(err)
	}
	m := loadWithCRL(t, dir, both, filepath.Join(dir, "ca.crl"))
	if _, err := m.VerifyClient(clientChain(t, dir, "alice"), now); err != nil {
		t.Fatalf("alice: %v", err)
	}
	if _, err := m.VerifyClient(clientChain(t, other, "carol"), now); err == nil || !strings.Contains(err.Error(), "no CRL") {
		t.Fatalf("carol, whose CA has no list: %v", err)
	}
	// A list that names the other CA as issuer but is signed by dir's CA.
	ca := loadCAForTest(t, dir)
	otherCA := loadCAForTest(t, other)
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, &x509.Certificate{Subject: otherCA.Cert.Subject, SubjectKeyId: otherCA.Cert.SubjectKeyId, KeyUsage: x509.KeyUsageCRLSign}, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(t.TempDir(), "forged.crl")
	crl, _ := os.ReadFile(filepath.Join(dir, "ca.crl"))
	if err := os.WriteFile(forged, append(crl, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...), 0o644); err != nil {
		t.Fatal(err)
	}
	m = loadWithCRL(t, dir, both, forged)
	if _, err := m.VerifyClient(clientChain(t, other, "carol"), now); err == nil || !strings.Contains(err.Error(), "no CRL") {
		t.Fatalf("carol under a forged list: %v", err)
	}
}

func loadCAForTest(t *testing.T, dir string) *Issued {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(pair.Certificate[0])
	return &Issued{Cert: c, Key: pair.PrivateKey.(crypto.Signer), DER: pair.Certificate[0]}
}

func TestCRLFilesThatCannotServeAreRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"empty": "", "garbage": "not a list", "a certificate": mustRead(t, filepath.Join(dir, "ca.crt"))} {
		f := filepath.Join(t.TempDir(), "x.crl")
		os.WriteFile(f, []byte(content), 0o644)
		if _, err := Load(&config.TLS{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: filepath.Join(dir, "ca.crt"), CRLFile: f}); err == nil {
			t.Errorf("%s crl_file loaded", name)
		}
	}
	// Revoke refuses a certificate of another CA, and a list of another CA.
	other := t.TempDir()
	if err := Init(other, nil, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Revoke(dir, []string{filepath.Join(other, "carol.crt")}, time.Now()); err == nil {
		t.Error("revoked a certificate of another CA")
	}
	if _, err := Revoke(other, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(other, "ca.crl"), filepath.Join(dir, "ca.crl"))
	if _, err := Revoke(dir, nil, time.Now()); err == nil {
		t.Error("replaced another CA's list")
	}
}

func mustRead(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
