package authcore

import "errors"

// ErrCertName means a verified client certificate names someone else.
var ErrCertName = errors.New("certificate common name is not the user")

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
