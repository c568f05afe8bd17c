package certs

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// revocations are the certificate revocation lists of tls.crl_file.
// Checked as PostgreSQL's ssl_crl_file is (OpenSSL's CRL_CHECK and
// CRL_CHECK_ALL): every certificate of a client's chain below the root
// needs a current CRL from its issuer, signed by that issuer, that does not
// list it. A missing or expired CRL refuses the certificate: revocation
// that silently stopped being checked would let a revoked key in.
type revocations struct {
	lists   []*x509.RevocationList
	revoked []map[string]struct{} // per list, the revoked serial numbers
	// signedBy remembers which (list, issuer) signatures verified, so a
	// login pays the signature check once per issuer, not every time.
	signedBy sync.Map // revocationKey -> bool
}

type revocationKey struct {
	list   int
	issuer string // the issuer certificate's DER
}

// loadRevocations reads PEM ("X509 CRL" blocks, any number) or one DER CRL.
func loadRevocations(path string) (*revocations, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: crl_file: %w", err)
	}
	r := &revocations{}
	add := func(der []byte) error {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			return fmt.Errorf("tls: crl_file %s: %v", path, err)
		}
		set := make(map[string]struct{}, len(l.RevokedCertificateEntries))
		for _, e := range l.RevokedCertificateEntries {
			set[e.SerialNumber.String()] = struct{}{}
		}
		r.lists = append(r.lists, l)
		r.revoked = append(r.revoked, set)
		return nil
	}
	if bytes.Contains(raw, []byte("-----BEGIN")) {
		for rest := raw; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "X509 CRL" {
				continue
			}
			if err := add(b.Bytes); err != nil {
				return nil, err
			}
		}
	} else if err := add(raw); err != nil {
		return nil, err
	}
	if len(r.lists) == 0 {
		return nil, fmt.Errorf("tls: crl_file %s holds no certificate revocation list (PEM \"X509 CRL\" or DER)", path)
	}
	return r, nil
}

// check refuses a verified chain (leaf first, root last) when one of its
// certificates below the root is revoked, or its issuer's CRL is missing
// or out of date.
func (r *revocations) check(chain []*x509.Certificate, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		l := r.from(issuer)
		if l < 0 {
			return fmt.Errorf("crl_file holds no CRL signed by %q, the issuer of %q", issuer.Subject.CommonName, cert.Subject.CommonName)
		}
		if next := r.lists[l].NextUpdate; !next.IsZero() && now.After(next) {
			return fmt.Errorf("the CRL of %q in crl_file expired at %s", issuer.Subject.CommonName, next.UTC().Format(time.RFC3339))
		}
		if _, ok := r.revoked[l][cert.SerialNumber.String()]; ok {
			return fmt.Errorf("certificate %q (serial %s) is revoked", cert.Subject.CommonName, cert.SerialNumber)
		}
	}
	return nil
}

// from returns the index of the newest list issuer signed, or -1.
func (r *revocations) from(issuer *x509.Certificate) int {
	best := -1
	for i, l := range r.lists {
		if !bytes.Equal(l.RawIssuer, issuer.RawSubject) {
			continue
		}
		k := revocationKey{i, string(issuer.Raw)}
		ok, seen := r.signedBy.Load(k)
		if !seen {
			ok = l.CheckSignatureFrom(issuer) == nil
			r.signedBy.Store(k, ok)
		}
		if ok.(bool) && (best < 0 || l.ThisUpdate.After(r.lists[best].ThisUpdate)) {
			best = i
		}
	}
	return best
}

// crlValidity is how long a list Revoke writes stays current: a CRL past
// its next update refuses every certificate of its CA, so a dev CA's list
// must not lapse between two revocations.
const crlValidity = 365 * 24 * time.Hour

// Revoke adds the certificates named by certFiles to dir/ca.crl, the CRL
// of the CA in dir/ca.crt and dir/ca.key (what Init made), keeping what
// the list already revoked, and renews its validity; with no files it
// only renews. It returns the serial numbers the list now holds.
func Revoke(dir string, certFiles []string, now time.Time) ([]string, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, fmt.Errorf("the CA in %s: %v", dir, err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("the CA key cannot sign")
	}
	path := filepath.Join(dir, "ca.crl")
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(crlValidity)}
	if old, err := loadRevocations(path); err == nil {
		l := old.from(ca)
		if l < 0 {
			return nil, fmt.Errorf("%s is not signed by %s: refusing to replace it", path, filepath.Join(dir, "ca.crt"))
		}
		tmpl.RevokedCertificateEntries = old.lists[l].RevokedCertificateEntries
		tmpl.Number = new(big.Int).Add(old.lists[l].Number, big.NewInt(1))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, f := range certFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		b, _ := pem.Decode(raw)
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s holds no PEM certificate", f)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		if c.CheckSignatureFrom(ca) != nil {
			return nil, fmt.Errorf("%s was not issued by %s", f, filepath.Join(dir, "ca.crt"))
		}
		if slices.ContainsFunc(tmpl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(c.SerialNumber) == 0 }) {
			continue // already revoked
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca, signer)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	var serials []string
	for _, e := range tmpl.RevokedCertificateEntries {
		serials = append(serials, e.SerialNumber.String())
	}
	return serials, nil
}
