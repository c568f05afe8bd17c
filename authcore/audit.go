package authcore

import (
	"go.uber.org/zap"
)

// Result values of an audit event.
const (
	ResultOK       = "ok"
	ResultFailed   = "failed"
	ResultRejected = "rejected"
	ResultNoRule   = "no_rule"
	// ResultBackend: pgwarden proved the client, and the backend refused
	// pgwarden's login as the mapped role.
	ResultBackend = "backend"
	// ResultAbandoned: the client left before it answered what it was
	// asked (pg_isready and other health checks do so by design), or
	// while its attempt waited for the throttle. It proved nothing and
	// failed nothing: logged at info, and the throttle does not count it.
	ResultAbandoned = "abandoned"
)

// AuditEvent is one authentication attempt, as the audit log records it.
// It holds no password, hash or token by construction: there is no field to
// put one in.
type AuditEvent struct {
	Protocol string
	ClientID uint64
	Address  string
	User     string
	Database string
	Rule     int // 0 when no rule matched
	Method   string
	// Credential is what an HTTP request offered (basic, bearer, session,
	// console login...); empty on the wire.
	Credential string
	SSL        bool
	Result     string
	Reason     string
}

// Log writes the event as one line.
func (e *AuditEvent) Log(l *zap.Logger) {
	level := zap.InfoLevel
	if e.Result != ResultOK && e.Result != ResultAbandoned {
		level = zap.WarnLevel
	}
	// Check first: with successes not logged (level warn), building the
	// fields was a fifth of what an HTTP request allocated.
	ce := l.Check(level, "authentication")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("protocol", e.Protocol),
		zap.Uint64("client_id", e.ClientID),
		zap.String("address", e.Address),
		zap.String("user", e.User),
		zap.String("database", e.Database),
		zap.Int("rule", e.Rule),
		zap.String("method", e.Method),
		zap.Bool("ssl", e.SSL),
		zap.String("result", e.Result),
	}
	if e.Credential != "" {
		fields = append(fields, zap.String("credential", e.Credential))
	}
	if e.Reason != "" {
		fields = append(fields, zap.String("reason", e.Reason))
	}
	ce.Write(fields...)
}
