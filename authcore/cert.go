package authcore

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// ErrCertName means a verified client certificate names someone else.
var ErrCertName = errors.New("certificate common name is not the user")

// oidCommonName is the X.500 commonName attribute (2.5.4.3).
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// CommonName is the one common name of a certificate's subject, the name
// the cert method and clientcert=verify-full compare with the user. Go's
// x509 keeps the last of several common names in Subject.CommonName,
// PostgreSQL reads the first: a subject with more than one names two
// people, and is refused rather than read either way, as is a common name
// with a zero byte (PostgreSQL refuses those too). A subject without one
// gives "", which equals no user name.
func CommonName(c *x509.Certificate) (string, error) {
	var cn string
	n := 0
	for _, atv := range c.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			continue
		}
		n++
		s, ok := atv.Value.(string)
		if !ok {
			return "", errors.New("the certificate's common name is not a string")
		}
		cn = s
	}
	if n > 1 {
		return "", fmt.Errorf("the certificate's subject holds %d common names, so it names no one user", n)
	}
	if strings.IndexByte(cn, 0) >= 0 {
		return "", errors.New("the certificate's common name contains a zero byte")
	}
	return cn, nil
}

// CertUser proves the named user by the common name of a client
// certificate that the caller has verified against the client CA. As with
// PostgreSQL's cert method, the CN must equal the user name exactly. A
// users-file entry is optional; if there is one, it must be usable.
func (a *Authenticator) CertUser(name, commonName string) (*User, error) {
	if commonName != name {
		return nil, ErrCertName
	}
	u := a.users.Lookup(name)
	if u != nil {
		if err := a.CheckUsable(u); err != nil {
			return nil, err
		}
	}
	return u, nil
}
