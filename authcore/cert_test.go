package authcore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"
)

// certWithSubject signs a self-signed certificate whose subject is rdns,
// written as given (pkix.Name cannot hold two common names).
func certWithSubject(t *testing.T, rdns pkix.RDNSequence) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: subject, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCommonNameIsTheOneCommonNameOfTheSubject(t *testing.T) {
	cn := func(v string) []pkix.AttributeTypeAndValue {
		return []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: v}}
	}
	org := []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Example"}}
	cases := []struct {
		name    string
		subject pkix.RDNSequence
		want    string
		err     string
	}{
		{"one", pkix.RDNSequence{org, cn("alice")}, "alice", ""},
		{"none", pkix.RDNSequence{org}, "", ""},
		{"two", pkix.RDNSequence{cn("alice"), cn("postgres")}, "", "2 common names"},
		{"two in one RDN", pkix.RDNSequence{append(cn("alice"), cn("postgres")...)}, "", "2 common names"},
		{"zero byte", pkix.RDNSequence{cn("postgres\x00alice")}, "", "zero byte"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CommonName(certWithSubject(t, tc.subject))
			if tc.err == "" && (err != nil || got != tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || got != "") {
				t.Fatalf("got %q, %v; want an error with %q", got, err, tc.err)
			}
		})
	}
}
