package authcore

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgwarden/pgwarden/hba"
)

// method is how the gate runs one HBA method: the protocols it serves, the
// proof it asks for, and its check. Where a method may be configured (cert
// only with [tls] and a client CA, peer only on the unix socket) is checked
// when the configuration loads, by package hba's table of the same methods;
// TestEveryMethodRunsWhereItMayBeConfigured keeps the two in step.
type method struct {
	pg, http bool
	proof    Proof
	run      func(ctx context.Context, st *State, a *Attempt, p Prover, id *Identity) *Refusal
}

// methods is every method the gate runs. No frontend switches on a method.
var methods = map[hba.Method]method{
	hba.Trust:  {pg: true, http: true, proof: ProofNone, run: runTrust},
	hba.Reject: {pg: true, http: true, proof: ProofNone, run: nil}, // refused before any run
	// On the wire, password asks for a cleartext password; over HTTP it
	// takes Basic, inline credentials, a console login or session, or a
	// token pgwarden issued itself (a password proof handed on).
	hba.Password: {pg: true, http: true, proof: ProofPassword, run: runPassword},
	// scram-sha-256 is a SASL exchange on the wire (SCRAM-SHA-256-PLUS
	// too, over TLS); over HTTP it is password. md5 performs SCRAM, as
	// PostgreSQL does for SCRAM-stored passwords.
	hba.SCRAM: {pg: true, http: true, proof: ProofPassword, run: runSCRAM},
	hba.MD5:   {pg: true, http: true, proof: ProofPassword, run: runSCRAM},
	hba.Cert:  {pg: true, http: true, proof: ProofCertificate, run: runCert},
	// jwt takes a token only: a bearer token over HTTP, the token as the
	// cleartext password on the wire (for drivers that can send nothing
	// else).
	hba.JWT:  {pg: true, http: true, proof: ProofToken, run: runJWT},
	hba.Peer: {pg: true, proof: ProofPeer, run: runPeer},
	// oauth is PostgreSQL 18's: SASL OAUTHBEARER on the wire, a bearer
	// token over HTTP, from the rule's issuer only.
	hba.OAuth: {pg: true, http: true, proof: ProofToken, run: runOAuth},
}

// runTrust proves nothing, but a users-file entry that is disabled or
// expired still may not log in (checked by the gate). Over HTTP a password
// sent anyway is ignored, as trust means. A bearer token is not: it is an
// identity claim whose user HBA matched on, known only through the
// token's signature, so it is verified as the token methods verify it,
// and a token that does not verify is refused (401) rather than taken at
// its word. Before, under trust an unsigned (alg none), expired or forged
// token ran as whoever it named, and the audit log said "ok" for it.
func runTrust(ctx context.Context, st *State, _ *Attempt, p Prover, id *Identity) *Refusal {
	if p.Offered() == OfferToken {
		tok, err := p.Token(ctx)
		if err != nil {
			return refusal(err, ProofToken)
		}
		u, err := st.Tokens.VerifyOwn(ctx, tok)
		if err != nil && st.Tokens.Enabled() {
			u, err = st.Tokens.Verify(ctx, tok)
		}
		if id.User, err = tokenUser(u, err)(id.Name); err != nil {
			return refusal(err, ProofToken)
		}
		return nil
	}
	id.User = st.Users.Lookup(id.Name)
	return nil
}

func runPassword(ctx context.Context, st *State, a *Attempt, p Prover, id *Identity) *Refusal {
	switch p.Offered() {
	case OfferToken:
		// Only a token pgwarden issued proves a password: it was handed
		// out for one.
		tok, err := p.Token(ctx)
		if err != nil {
			return refusal(err, ProofPassword)
		}
		u, err := tokenUser(st.Tokens.VerifyOwn(ctx, tok))(id.Name)
		if err != nil {
			return refusal(err, ProofPassword)
		}
		id.User = u
		return nil
	case OfferSession:
		// The frontend checked the session against the users file in
		// force when it read the cookie; the rule is checked here.
		if id.User = st.Users.Lookup(id.Name); id.User == nil {
			return refusal(Fail(ReasonUnknownUser), ProofPassword)
		}
		return nil
	}
	pw, err := p.Password(ctx)
	if err != nil {
		return refusal(err, ProofPassword)
	}
	if a.Login && st.Users.Lookup(id.Name) == nil {
		// A console session must be checkable against the users file at
		// every request, and auth_query users have no entry there. The
		// password is still checked, so the refusal costs what a real one
		// does.
		if _, err := st.Auth.CheckPassword(ctx, id.Name, pw); err != nil {
			return refusal(err, ProofPassword)
		}
		return refusal(Fail("auth_query user: console logins need a users-file entry"), ProofPassword)
	}
	u, err := st.Auth.CheckPassword(ctx, id.Name, pw)
	if err != nil {
		return refusal(err, ProofPassword)
	}
	id.User, id.Password = u, pw
	return nil
}

// runSCRAM runs a SCRAM-SHA-256 exchange where the frontend speaks SASL,
// else it is password.
func runSCRAM(ctx context.Context, st *State, a *Attempt, p Prover, id *Identity) *Refusal {
	sx := p.SASL()
	if sx == nil {
		return runPassword(ctx, st, a, p, id)
	}
	cb := sx.ChannelBinding()
	mechs := []string{MechSCRAM}
	if len(cb) > 0 {
		mechs = []string{MechSCRAMPlus, MechSCRAM}
	}
	mech, data, err := sx.Offer(mechs)
	if err != nil {
		return refusal(err, ProofPassword)
	}
	ex, err := st.Auth.StartSCRAM(ctx, id.Name, mech, cb)
	if err != nil {
		return refusal(err, ProofPassword)
	}
	out, _, err := ex.Step(data)
	if err != nil {
		return refusal(err, ProofPassword)
	}
	in, err := sx.Continue(out)
	if err != nil {
		return refusal(err, ProofPassword)
	}
	if out, _, err = ex.Step(in); err != nil {
		return refusal(err, ProofPassword)
	}
	if err := sx.Final(out); err != nil {
		return refusal(err, ProofPassword)
	}
	id.User, id.SCRAM = ex.User(), ex.Keys()
	return nil
}

func runCert(_ context.Context, st *State, _ *Attempt, p Prover, id *Identity) *Refusal {
	leaf, err := p.Certificate()
	if err != nil {
		return &Refusal{Kind: RefusedCertRequired, Reason: "client certificate: " + err.Error()}
	}
	cn, err := CommonName(leaf)
	if err != nil {
		return &Refusal{Kind: RefusedCertName, Reason: "client certificate: " + err.Error()}
	}
	u, err := st.Auth.CertUser(id.Name, cn)
	if errors.Is(err, ErrCertName) {
		return &Refusal{Kind: RefusedCertName, Reason: fmt.Sprintf("client certificate: CN %q is not the user", cn)}
	}
	if err != nil {
		return refusal(err, ProofCertificate)
	}
	id.User = u
	return nil
}

func runJWT(ctx context.Context, st *State, _ *Attempt, p Prover, id *Identity) *Refusal {
	if p.Offered() != OfferToken && p.Offered() != OfferInteractive {
		return refusal(ErrNotOffered, ProofToken)
	}
	tok, err := p.Token(ctx)
	if err != nil {
		return refusal(err, ProofToken)
	}
	u, err := tokenUser(st.Tokens.Verify(ctx, tok))(id.Name)
	if err != nil {
		return refusal(err, ProofToken)
	}
	id.User = u
	return nil
}

// tokenUser takes what a token verification answered and checks, for the
// name the client claimed, that the token is that user's: a valid token of
// someone else proves nothing.
func tokenUser(u *User, err error) func(name string) (*User, error) {
	return func(name string) (*User, error) {
		if err != nil {
			return nil, err
		}
		if u.Name != name {
			return nil, Fail(ReasonBadToken + ": token is for another user")
		}
		return u, nil
	}
}

func runPeer(_ context.Context, st *State, a *Attempt, p Prover, id *Identity) *Refusal {
	osUser, err := p.PeerUser()
	if err != nil {
		return &Refusal{Kind: RefusedPeer, Reason: "peer: " + err.Error()}
	}
	if osUser != id.Name {
		return &Refusal{Kind: RefusedPeer, Reason: fmt.Sprintf("provided user name (%s) and authenticated user name (%s) do not match", id.Name, osUser)}
	}
	id.User = st.Users.Lookup(id.Name)
	return nil
}
