package pgwire

import (
	"github.com/pgwarden/pgwarden/snapshot"
)

// adminConsole serves server.admin_database. Only users holding role admin
// may use it.
func (c *conn) adminConsole(snap *snapshot.Snapshot, res *authResult) error {
	if res.user == nil || !res.user.HasRole("admin") {
		return AdminDenied()
	}
	return &Error{Code: codeFeatureNotSupported, Message: "the admin console is not available yet"}
}
