package integration

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/hba"
)

// hbaMemberships are the roles each login role of the conformance cluster
// is a member of, directly or not, as PostgreSQL's HBA counts them (a
// superuser only through grants): pgwarden's matcher is given the same.
var hbaMemberships = map[string][]string{"r1": {"g1", "g2"}, "r2": {"R1"}, "r3": {"g2"}, "su": {"g1", "g2"}}

const hbaConformanceSetup = `
CREATE ROLE g1; CREATE ROLE g2;
CREATE ROLE r1 LOGIN; CREATE ROLE r2 LOGIN; CREATE ROLE r3 LOGIN; CREATE ROLE su LOGIN SUPERUSER;
CREATE ROLE "R1" LOGIN; CREATE ROLE "all" LOGIN; CREATE ROLE "a b" LOGIN; CREATE ROLE replication LOGIN REPLICATION;
GRANT g2 TO g1; GRANT g1 TO r1; GRANT g2 TO r3; GRANT g1 TO su; GRANT "R1" TO r2; ALTER ROLE r3 NOINHERIT;
CREATE ROLE pgw_auth LOGIN SUPERUSER;`

// The pieces random pg_hba.conf lines are made of: keywords bare and
// quoted, lists with and without spaces after the comma, +roles, names
// that are keywords elsewhere, IPv4 and IPv6 networks in CIDR and netmask
// form.
var (
	hbaDatabases = []string{"all", "sameuser", "samerole", "samegroup", "replication", "db1", "r1", "g1", "g2", `"all"`,
		`"replication"`, `"sameuser"`, `"samerole"`, "postgres", "nosuchdb", `"db1,r1"`, `"DB1"`, "DB1", "+g1"}
	hbaUsers = []string{"all", "r1", "r2", "r3", "su", "+g1", "+g2", "+r1", "+su", "+R1", "+r2", `"+g1"`, `"all"`, "R1", `"R1"`,
		`"a b"`, "replication", "postgres", "nosuch", "samerole", "ALL"}
	hbaAddresses = []string{"all", "127.0.0.1/32", "127.0.0.0/8", "127.0.0.2/32", "127.0.0.1 255.255.255.255", "::1/128",
		"::/0", "0.0.0.0/0", "127.0.0.0 255.0.0.0", "127.0.0.0/31", "127.0.0.2 255.255.255.254", "::ffff:127.0.0.1/8", "::ffff:127.0.0.1/128"}
	hbaMethods = []string{"trust", "reject", "scram-sha-256", "password", "md5"}
)

func pickOne(r *rand.Rand, xs []string) string { return xs[r.Intn(len(xs))] }

// hbaField is a database or user field: "all" one time in three (so that
// lines match connections often enough to be compared; of pure picks, four
// in five connections matched no line), else one or two of xs.
func hbaField(r *rand.Rand, xs []string) string {
	if r.Intn(3) == 0 {
		return "all"
	}
	parts := []string{pickOne(r, xs)}
	if r.Intn(2) == 0 {
		parts = append(parts, pickOne(r, xs))
	}
	return strings.Join(parts, pickOne(r, []string{",", ", "}))
}

func randomHBAFile(r *rand.Rand) string {
	var b strings.Builder
	for n := 1 + r.Intn(5); n >= 0; n-- {
		m := pickOne(r, hbaMethods)
		typ := pickOne(r, []string{"local", "host", "host", "hostnossl", "hostssl", "hostssl", "hostgssenc", "hostnogssenc"})
		// Certificates: method cert and clientcert= on hostssl lines, and
		// now and then where PostgreSQL refuses them (on other lines, and
		// cert with verify-ca), which pgwarden must refuse too; but not
		// cert on a host line, which pgwarden reads as PgBouncer does (see
		// TestPgBouncerHBAVectors).
		misplaced := r.Intn(25) == 0
		if (typ == "hostssl" || (misplaced && typ != "host")) && r.Intn(3) == 0 {
			m = "cert"
		}
		if (typ == "hostssl" || misplaced) && r.Intn(3) == 0 {
			m += " clientcert=" + pickOne(r, []string{"verify-ca", "verify-full"})
		}
		if m == "reject clientcert=verify-ca" || m == "reject clientcert=verify-full" {
			// PostgreSQL asks for the certificate before it rejects,
			// pgwarden rejects first: a refusal either way, told apart
			// only by its message.
			m = "reject"
		}
		if m == "cert clientcert=verify-ca" && !misplaced {
			m = "cert clientcert=verify-full"
		}
		switch typ {
		case "local":
			if r.Intn(4) == 0 {
				m = "peer"
			}
			fmt.Fprintf(&b, "%s %s %s %s\n", typ, hbaField(r, hbaDatabases), hbaField(r, hbaUsers), m)
		default:
			fmt.Fprintf(&b, "%s %s %s %s %s\n", typ, hbaField(r, hbaDatabases), hbaField(r, hbaUsers), pickOne(r, hbaAddresses), m)
		}
	}
	// Half the files end in lines for everyone, as most real ones do.
	if r.Intn(2) == 0 {
		fmt.Fprintf(&b, "local all all %s\nhost all all all %s\n", pickOne(r, hbaMethods), pickOne(r, hbaMethods))
	}
	return b.String()
}

// hbaAttempt is one connection: who, to what, from where.
type hbaAttempt struct {
	user, db string
	from     string // an address of 127.0.0.0/8, ::1, or "local"
	repl     string // the replication startup parameter, "" for none
	// tls is "" for a plaintext connection, "-" for TLS without a client
	// certificate, else the name of the client certificate presented.
	tls string
}

// postgresDecision connects to the cluster as a and reads its first
// answer: the method PostgreSQL's HBA chose ("ok" for trust, "sasl" for
// scram-sha-256 and md5, "cleartext" for password, "peer"), or "reject",
// or "none" for no matching line, or "certrequired" when the line wants a
// client certificate the connection lacks, or "certname" when the
// certificate's name is not the user (method cert, trust with
// clientcert=verify-full).
func postgresDecision(c *pgCluster, tlsConfigs map[string]*tls.Config, a hbaAttempt) (string, error) {
	return firstAnswer(c.sockDir, c.port, tlsConfigs, a)
}

// firstAnswer is postgresDecision for the server listening on port (TCP on
// 127.0.0.1 and ::1) and in sockDir: PostgreSQL, or pgwarden, whose
// answers read the same way.
func firstAnswer(sockDir string, port int, tlsConfigs map[string]*tls.Config, a hbaAttempt) (string, error) {
	var conn net.Conn
	var err error
	if a.from == "local" {
		conn, err = net.Dial("unix", filepath.Join(sockDir, ".s.PGSQL."+strconv.Itoa(port)))
	} else {
		ip := net.ParseIP(a.from)
		host := "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
		conn, err = d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if a.tls != "" {
		if _, err := conn.Write(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)); err != nil {
			return "", err
		}
		var b [1]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != 'S' {
			return "", fmt.Errorf("SSLRequest answered %q, %v", b[0], err)
		}
		tc := tls.Client(conn, tlsConfigs[a.tls])
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		conn = tc
	}
	body := binary.BigEndian.AppendUint32(nil, 3<<16)
	kv := []string{"user", a.user}
	if a.db != "" {
		kv = append(kv, "database", a.db)
	}
	if a.repl != "" {
		kv = append(kv, "replication", a.repl)
	}
	for _, s := range kv {
		body = append(append(body, s...), 0)
	}
	body = append(body, 0)
	if _, err := conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)); err != nil {
		return "", err
	}
	var hdr [5]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return "", err
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return "", err
	}
	switch hdr[0] {
	case 'R':
		switch code := binary.BigEndian.Uint32(msg); code {
		case 0:
			return "ok", nil
		case 3:
			return "cleartext", nil
		case 5, 10:
			return "sasl", nil
		default:
			return "", fmt.Errorf("authentication request %d", code)
		}
	case 'E':
		s := string(msg)
		switch {
		case strings.Contains(s, "pg_hba.conf rejects"), strings.Contains(s, "HBA rejects connection"):
			return "reject", nil
		case strings.Contains(s, "no pg_hba.conf entry"), strings.Contains(s, "no HBA rule for"):
			return "none", nil
		case strings.Contains(s, "Peer authentication failed"):
			return "peer", nil
		case strings.Contains(s, `invalid value for parameter "replication"`):
			return "badrepl", nil
		case strings.Contains(s, "connection requires a valid client certificate"):
			return "certrequired", nil
		case strings.Contains(s, "certificate authentication failed"), strings.Contains(s, `"trust" authentication failed`):
			return "certname", nil
		case strings.Contains(s, "does not exist"), strings.Contains(s, "must be superuser or replication role"):
			return "ok", nil // trust let it in; what came after is not HBA's
		}
		return "", fmt.Errorf("unexpected error %q", s)
	}
	return "", fmt.Errorf("unexpected message %q", hdr[0])
}

// replicationBool reads the replication startup parameter as PostgreSQL
// does: "database" is a walsender in a database (HBA sees an ordinary
// connection), else parse_bool's forms; ok is false for a value
// PostgreSQL refuses.
func replicationBool(v string) (physical, ok bool) {
	if v == "" || v == "database" {
		return false, true
	}
	l := strings.ToLower(v)
	prefixOf := func(word string, min int) bool {
		return len(l) >= min && len(l) <= len(word) && word[:len(l)] == l
	}
	switch {
	case prefixOf("true", 1), prefixOf("yes", 1), prefixOf("on", 2), l == "1":
		return true, true
	case prefixOf("false", 1), prefixOf("no", 1), prefixOf("off", 2), l == "0":
		return false, true
	}
	return false, false
}

// hbaSentinel is the first line of the n-th pg_hba.conf a conformance test
// loads: for user postgres from 127.0.0.254, which no attempt uses, the
// method alternates between password and reject, so the answer to such a
// connection tells when a server has taken up the new file.
func hbaSentinel(n int) string {
	if n%2 == 0 {
		return "host all postgres 127.0.0.254/32 password\n"
	}
	return "host all postgres 127.0.0.254/32 reject\n"
}

// hbaFixedLines follow the sentinel in every file: they let in the role
// pgwarden's auth_query runs as, which no attempt uses.
const hbaFixedLines = "host all pgw_auth 127.0.0.1/32 trust\n"

// hbaGateway is a pgwarden whose hba_file a conformance test rewrites.
type hbaGateway struct {
	*gateway
	name, hbaFile string
}

// startHBAGateway starts a pgwarden with the cluster's certificates (from
// pkiDir), the cluster at port as its backend, an hba_file, more
// configuration and users.
func startHBAGateway(t *testing.T, name, pkiDir string, port int, extra string, users []testUser) *hbaGateway {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
		b, err := os.ReadFile(filepath.Join(pkiDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "certs", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hbaFile := filepath.Join(dir, "pg_hba.conf")
	if err := os.WriteFile(hbaFile, []byte(hbaSentinel(1)+hbaFixedLines), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, dir: dir, port: freePort(), sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}),
		opts: gwOptions{top: fmt.Sprintf("hba_file = %q\n", hbaFile), backendPort: port}}
	g.writeConfig(tlsSection + extra)
	g.writeUsers(users)
	g.start()
	return &hbaGateway{gateway: g, name: name, hbaFile: hbaFile}
}

// pgwardenDecision is the same as postgresDecision, from pgwarden's rules:
// the rule hba.Match chooses, and what authcore's gate asks of a
// certificate under it (clientcert= and method cert want one before the
// method runs; cert, and trust with verify-full, compare its name with the
// user's).
func pgwardenDecision(rules hba.Rules, a hbaAttempt) string {
	physical, ok := replicationBool(a.repl)
	if !ok {
		return "badrepl"
	}
	db := a.db
	if db == "" {
		db = a.user
	}
	req := &hba.Request{Protocol: hba.ProtoPG, User: a.user, Database: db, Replication: physical, Roles: hbaMemberships[a.user], SSL: a.tls != ""}
	if a.from == "local" {
		req.Local = true
	} else {
		req.Addr = netip.MustParseAddr(a.from)
	}
	m := rules.Match(req)
	if m == nil {
		return "none"
	}
	cert := a.tls != "" && a.tls != "-"
	if m.Method != hba.Reject && (m.ClientCert != "" || m.Method == hba.Cert) && !cert {
		return "certrequired"
	}
	switch m.Method {
	case hba.Cert:
		if a.tls != a.user {
			return "certname"
		}
		return "ok"
	case hba.Trust:
		if m.ClientCert == "verify-full" && a.tls != a.user {
			return "certname"
		}
		return "ok"
	case hba.SCRAM, hba.MD5:
		return "sasl"
	case hba.Password:
		return "cleartext"
	case hba.Peer:
		if me, err := user.Current(); err == nil && me.Username == a.user {
			return "ok"
		}
		return "peer"
	}
	return string(m.Method)
}

// A pg_hba.conf decides in pgwarden what it decides in PostgreSQL: random
// files of keywords, quoted names, lists, +roles, IPv4 and IPv6 networks
// and methods are loaded into a PostgreSQL of the test's own and into
// pgwarden's rules, and random connections (from addresses of 127.0.0.0/8,
// ::1 and the unix socket; plaintext or TLS, with or without a client
// certificate; to databases and as roles that exist or not, or with no
// database; with and without replication, written in any form) get the
// same answer from both: the same method, a refusal, or no matching line.
// They are asked of pgwarden's rule matcher, and of two running pgwardens
// whose hba_file is each file in turn: one whose users file holds the
// cluster's roles and memberships, and one with [auth_query], which reads
// them from the cluster. The second found that a reload closed the
// auth_query pool under the logins in flight
// (TestLoginsThroughAuthQueryDuringReloadsAreNotRefused). pgwarden may refuse a file
// that PostgreSQL loads only for a reason it names (an IPv4-mapped
// network), and must refuse every file PostgreSQL refuses.
// This is how pgwarden's reading of ::ffff:a.b.c.d/104 as the IPv4
// network was found: PostgreSQL never matches such a line with an IPv4
// client, and a trust line written that way let clients in that
// PostgreSQL sent on to a password line below it.
func TestHBAFilesDecideAsPostgreSQLDecides(t *testing.T) {
	ipv6 := true
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		ipv6 = false
	} else {
		l.Close()
	}
	listen := "127.0.0.1"
	if ipv6 {
		listen += ",::1"
	}
	c, err := startCluster("listen_addresses = '" + listen + "'")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Destroy)
	if err := c.Exec(hbaConformanceSetup); err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{"db1", "r1", "g1", "g2", "replication", `"all"`} {
		if err := c.Exec("CREATE DATABASE " + db); err != nil {
			t.Fatal(err)
		}
	}
	pkiDir, err := enableClusterTLS(c, "r1", "r2")
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: pkiDir, ca: loadCA(t, pkiDir)}
	tlsConfigs := map[string]*tls.Config{"-": p.clientTLS(t, ""), "r1": p.clientTLS(t, "r1"), "r2": p.clientTLS(t, "r2")}
	ctx := context.Background()
	// The control connection outlives every pg_hba.conf the test writes.
	ctl, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.sockDir, c.port))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close(ctx)

	froms := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.1.2.3", "local"}
	if ipv6 {
		froms = append(froms, "::1")
	}
	users := []string{"r1", "r2", "r3", "su", "R1", "all", "a b", "replication", "postgres"}
	// The test's own OS user is a role too, so peer lines let someone in.
	if me, err := user.Current(); err == nil && !slices.Contains(users, me.Username) {
		if err := c.Exec(fmt.Sprintf("CREATE ROLE %s LOGIN", pgx.Identifier{me.Username}.Sanitize())); err != nil {
			t.Fatal(err)
		}
		users = append(users, me.Username)
	}
	dbs := []string{"db1", "r1", "g1", "g2", "all", "replication", "postgres", "nosuchdb", "DB1"}
	// pgwarden itself, reading the same files through hba_file, with the
	// cluster's certificates and the cluster's roles and memberships in
	// its users file, answers the same connections on its own ports (not
	// on ::1: it listens on 127.0.0.1 and its unix socket).
	var gwUsers []testUser
	for _, u := range users {
		var extra string
		if roles := hbaMemberships[u]; roles != nil {
			extra = fmt.Sprintf("roles = [\"%s\"]\n", strings.Join(roles, `", "`))
		}
		gwUsers = append(gwUsers, testUser{name: u, extra: extra})
	}
	// Two of them: one whose users file holds the cluster's roles and
	// memberships, and one with an empty users file and [auth_query], for
	// which every name is a PostgreSQL role and "+role" and "samerole"
	// read its memberships from the cluster, through a role every file
	// lets in (hbaFixedLines).
	gateways := []*hbaGateway{
		startHBAGateway(t, "users file", pkiDir, c.port, "", gwUsers),
		startHBAGateway(t, "auth_query", pkiDir, c.port, "\n[auth_query]\nuser = \"pgw_auth\"\n", nil),
	}

	// HBA_SEED=n draws other files (a fixed seed keeps CI's run the same).
	seed := int64(20261207)
	if v, err := strconv.ParseInt(os.Getenv("HBA_SEED"), 10, 64); err == nil {
		seed = v
		t.Logf("HBA_SEED=%d", seed)
	}
	rng := rand.New(rand.NewSource(seed))
	hbaPath := filepath.Join(c.data, "pg_hba.conf")
	compared, wire, files, pgRefused, refused := 0, 0, 0, 0, 0
	answers := map[string]int{}
	deadline := time.Now().Add(120 * time.Second)
	for n := 0; files < 40 && n < 300 && time.Now().Before(deadline); n++ {
		// The first line tells when a server has read this file (a
		// reload is asynchronous): its answer for a source no attempt
		// uses changes with every file loaded.
		text := hbaSentinel(files) + hbaFixedLines + randomHBAFile(rng)
		if err := os.WriteFile(hbaPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		var pgErrors string
		if err := ctl.QueryRow(ctx, "SELECT coalesce(string_agg(line_number || ': ' || coalesce(error, '(refused, no message)'), '; '), '') FROM pg_hba_file_rules WHERE error IS NOT NULL OR type IS NULL").Scan(&pgErrors); err != nil {
			t.Fatal(err)
		}
		rules, err := hba.ParseFile("pg_hba.conf", []byte(text), hba.Env{TLS: true, ClientCA: true})
		switch {
		case pgErrors != "" && err == nil:
			t.Errorf("pgwarden loads a pg_hba.conf that PostgreSQL refuses (%s):\n%s", pgErrors, text)
			continue
		case pgErrors != "":
			pgRefused++ // PostgreSQL would keep the old file: nothing to compare
			continue
		case err != nil && strings.Contains(err.Error(), "IPv4-mapped"):
			refused++
			continue
		case err != nil:
			t.Errorf("pgwarden refuses a pg_hba.conf that PostgreSQL loads: %v\n%s", err, text)
			continue
		}
		if _, err := ctl.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		servers := []struct {
			name    string
			sockDir string
			port    int
		}{{"PostgreSQL", c.sockDir, c.port}}
		for _, gw := range gateways {
			if err := os.WriteFile(gw.hbaFile, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			servers = append(servers, struct {
				name    string
				sockDir string
				port    int
			}{"pgwarden (" + gw.name + ")", gw.sockDir, gw.port})
		}
		sentinel := hbaAttempt{user: "postgres", db: "postgres", from: "127.0.0.254"}
		want := map[bool]string{true: "cleartext", false: "reject"}[files%2 == 0]
		for _, server := range servers {
			for wait := time.Now().Add(10 * time.Second); ; {
				if d, err := firstAnswer(server.sockDir, server.port, tlsConfigs, sentinel); err == nil && d == want {
					break
				}
				if time.Now().After(wait) {
					t.Fatalf("%s did not take up the new pg_hba.conf:\n%s", server.name, text)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		files++
		for k := 0; k < 30; k++ {
			a := hbaAttempt{user: pickOne(rng, users), db: pickOne(rng, dbs), from: pickOne(rng, froms),
				repl: pickOne(rng, []string{"", "", "", "", "", "", "", "", "true", "database", "database", "on", "Yes", "1", "t", "of", "false", "0", "o", "Database"})}
			switch rng.Intn(8) {
			case 0, 1:
				a.db = a.user
			case 2:
				a.db = "" // no database: PostgreSQL takes the user's name
			}
			if a.from != "local" {
				a.tls = pickOne(rng, []string{"", "", "-", "r1", "r2"})
			}
			want, err := postgresDecision(c, tlsConfigs, a)
			if err != nil {
				t.Fatalf("%+v: %v\n%s", a, err, text)
			}
			answers[want]++
			if got := pgwardenDecision(rules, a); got != want {
				t.Errorf("%+v: PostgreSQL %s, pgwarden's rules %s, with\n%s", a, want, got, text)
			}
			compared++
			if a.from == "::1" {
				continue
			}
			for _, gw := range gateways {
				got, err := firstAnswer(gw.sockDir, gw.port, tlsConfigs, a)
				if err != nil {
					t.Fatalf("%+v through pgwarden (%s): %v\n%s", a, gw.name, err, text)
				}
				if got != want {
					t.Errorf("%+v: PostgreSQL %s, pgwarden's wire (%s) %s, with\n%s", a, want, gw.name, got, text)
				}
			}
			wire++
		}
	}
	t.Logf("%d pg_hba.conf files loaded by both, %d connections compared (%d also through pgwarden's wire); %d files PostgreSQL refused, %d pgwarden refused (IPv4-mapped networks); PostgreSQL's answers: %v", files, compared, wire, pgRefused, refused, answers)
	if files < 20 {
		t.Errorf("only %d files compared: the test no longer tries much", files)
	}
}
