package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/xdg-go/scram"

	"github.com/pgwarden/pgwarden/config"
)

// ALPNPostgres is the ALPN protocol name of the Postgres wire protocol
// (PostgreSQL 17), required for direct TLS.
const ALPNPostgres = "postgresql"

// Material is the TLS state of one snapshot: the server certificate, the CA
// client certificates must chain to, and the derived values handshakes
// need. It is immutable; a reload loads new Material.
type Material struct {
	Leaf      *x509.Certificate
	ClientCAs *x509.CertPool // nil without client_ca_file
	// EndpointHash is the tls-server-end-point channel binding of the
	// server certificate (RFC 5929), for SCRAM-SHA-256-PLUS.
	EndpointHash []byte

	crl  *revocations // nil without crl_file
	pg   *tls.Config
	http *tls.Config
}

// Load reads the files named by [tls]. A certificate and key that do not
// pair, an unreadable CA file or a CA file with no certificate fail loudly.
func Load(c *config.TLS) (*Material, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %s and %s: %v", c.CertFile, c.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: %s: %v", c.CertFile, err)
		}
	}
	m := &Material{Leaf: leaf}
	cb, err := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
	if err == nil {
		m.EndpointHash = cb.Data
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client_ca_file: %v", err)
		}
		m.ClientCAs = x509.NewCertPool()
		if !m.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client_ca_file %s holds no PEM certificate", c.ClientCAFile)
		}
	}
	if c.CRLFile != "" {
		if m.ClientCAs == nil {
			return nil, errors.New("tls: crl_file needs client_ca_file")
		}
		if m.crl, err = loadRevocations(c.CRLFile); err != nil {
			return nil, err
		}
	}
	min := uint16(tls.VersionTLS12)
	if c.MinVersion == "1.3" {
		min = tls.VersionTLS13
	}
	m.pg = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   min,
		NextProtos:   []string{ALPNPostgres},
		// As PostgreSQL (SSL_OP_NO_TICKET): libpq, psycopg and pgx never
		// resume a session, and the wire's handshake takes this config
		// through a per-connection GetConfigForClient, whose ticket keys
		// no other connection shares, so no ticket could ever be used.
		// Each one was still made, encrypted and sent: about 5% of a TLS
		// login's CPU, measured.
		SessionTicketsDisabled: true,
	}
	m.http = m.pg.Clone()
	m.http.NextProtos = []string{"h2", "http/1.1"}
	// Browsers and HTTP clients do resume: HTTPS keeps tickets.
	m.http.SessionTicketsDisabled = false
	if m.ClientCAs != nil {
		m.http.ClientAuth = tls.RequestClientCert
		// Ask for a certificate but verify it ourselves (VerifyClient):
		// a missing, expired or foreign certificate then gets
		// PostgreSQL's error message instead of a bare TLS alert, and
		// only rules that need one (cert, clientcert=) refuse it.
		m.pg.ClientAuth = tls.RequestClientCert
	}
	return m, nil
}

// HTTPConfig is the server configuration for HTTPS: the same certificate
// and client CA, with HTTP's ALPN names.
func (m *Material) HTTPConfig() *tls.Config { return m.http }

// PGConfig is the server configuration for Postgres wire handshakes.
func (m *Material) PGConfig() *tls.Config { return m.pg }

// ErrNoClientCert means the client sent no certificate.
var ErrNoClientCert = errors.New("no client certificate")

// VerifyClient checks a client's certificate chain against the client CA at
// time now, and against crl_file when there is one, and returns the
// verified leaf.
func (m *Material) VerifyClient(chain []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, ErrNoClientCert
	}
	if m.ClientCAs == nil {
		return nil, errors.New("no client_ca_file configured")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         m.ClientCAs,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	if m.crl != nil {
		// Any one chain that no CRL refuses will do, as for Verify.
		for _, c := range chains {
			if err = m.crl.check(c, now); err == nil {
				break
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return chain[0], nil
}
