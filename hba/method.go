package hba

// Method is how a matched rule makes a client prove who it is.
type Method string

// The methods of SPEC section 4.
const (
	Trust    Method = "trust"
	Reject   Method = "reject"
	Password Method = "password"
	SCRAM    Method = "scram-sha-256"
	MD5      Method = "md5"
	Cert     Method = "cert"
	JWT      Method = "jwt"
	Peer     Method = "peer"
	// OAuth is PostgreSQL 18's oauth: SASL OAUTHBEARER (RFC 7628) on the
	// wire, a bearer token over HTTP, verified against one issuer.
	OAuth Method = "oauth"
)

// methodInfo says where a method may be used. Rules are checked against this
// table when the configuration loads, never when a client arrives (as
// CockroachDB's hba method registry does).
type methodInfo struct {
	pg, http  bool // protocols it can serve
	needsTLS  bool // meaningless without a TLS session (cert)
	localOnly bool // needs the unix socket's peer credentials (peer)
	tlsOnly   bool // matches TLS connections only, as if ssl = "on" (oauth)
	// missing, when set, is why this build cannot honour the method yet; a
	// rule using it fails to load rather than failing every client later.
	missing string
}

var methods = map[Method]methodInfo{
	Trust:    {pg: true, http: true},
	Reject:   {pg: true, http: true},
	Password: {pg: true, http: true},
	SCRAM:    {pg: true, http: true},
	MD5:      {pg: true, http: true},
	Cert:     {pg: true, http: true, needsTLS: true},
	JWT:      {pg: true, http: true},
	Peer:     {pg: true, localOnly: true},
	// A bearer token is a secret: oauth matches TLS connections only.
	OAuth: {pg: true, http: true, tlsOnly: true},
}

// ProvesPassword reports whether m proves a user by a password (md5
// performs scram-sha-256, as PostgreSQL does for SCRAM-stored passwords):
// the methods under which pgwarden issues tokens and holds web console
// sessions.
func (m Method) ProvesPassword() bool {
	return m == Password || m == SCRAM || m == MD5
}

// Known reports whether m is one of the methods pgwarden understands.
func Known(m Method) bool {
	_, ok := methods[m]
	return ok
}

// Serves reports which protocols m may serve, from the table config load
// checks rules against; authcore's table of how each method runs must
// agree (a test keeps them in step).
func Serves(m Method) (pg, http bool) {
	info := methods[m]
	return info.pg, info.http
}

// Methods lists every method pgwarden understands.
func Methods() []Method {
	out := make([]Method, 0, len(methods))
	for m := range methods {
		out = append(out, m)
	}
	return out
}
