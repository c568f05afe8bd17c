package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRandomSQLBodiesAreAnsweredNeverFailedByTheServer sends /_sql bodies
// built at random from every request shape (one statement, bulk_args, a
// transaction) with statements of many parameter types (those pgx knows,
// an enum array, a composite, a point, none) and arguments of every JSON
// kind, of the right number and one more or fewer: huge and fractional
// numbers, empty, ragged and deep arrays, objects, strings that are no
// base64, NUL and half a surrogate pair. Whatever the body, the answer is
// 200 or a client error with a SQLSTATE, never pgwarden's own failure (a
// bulk_args list of the wrong length was a 500 until December 2026), and
// the server stays usable. CHAOS_SEED replays a run, CHAOS_SESSIONS sets
// the number of requests.
func TestRandomSQLBodiesAreAnsweredNeverFailedByTheServer(t *testing.T) {
	seed, requests := chaosSettings(t, 800)
	for _, sql := range []string{
		"DROP TABLE IF EXISTS body_t",
		"DROP TYPE IF EXISTS body_mood",
		"DROP TYPE IF EXISTS body_pair",
		"CREATE TYPE body_mood AS ENUM ('ok', 'sad')",
		"CREATE TYPE body_pair AS (a int, b text)",
		"CREATE TABLE body_t (id int, t text, a int[], j jsonb, b bytea, m body_mood[], n numeric, d date)",
		"GRANT ALL ON body_t TO alice",
	} {
		if err := pg.Exec(sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		pg.Exec("DROP TABLE IF EXISTS body_t; DROP TYPE IF EXISTS body_mood; DROP TYPE IF EXISTS body_pair")
	})
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})

	const workers = 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(500+w)))
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; i < requests/workers; i++ {
				body := randomSQLBody(rng)
				status, raw, err := postSQL(context.Background(), client, g.httpURL()+"/_sql?db=postgres", json.RawMessage(body), basicAuth("alice", "alice-Pass-1"))
				if err != nil {
					t.Errorf("request w%d-%d %s: %v", w, i, body, err)
					return
				}
				if msg := badSQLAnswer(status, raw); msg != "" {
					t.Errorf("request w%d-%d %s: answered %d %s: %s", w, i, body, status, raw, msg)
					return
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("answers by status: %v", statuses)
	if statuses[200] == 0 || statuses[400] == 0 {
		t.Fatalf("the bodies were not varied enough to test anything: %v", statuses)
	}
	// The connections the requests left behind still serve.
	for i := 0; i < 4; i++ {
		status, raw, err := postSQL(context.Background(), http.DefaultClient, g.httpURL()+"/_sql?db=postgres", map[string]any{"stmt": "SELECT 1 AS one"}, basicAuth("alice", "alice-Pass-1"))
		if err != nil || status != 200 || !strings.Contains(string(raw), `"rows":[[1]]`) {
			t.Fatalf("after the run: %d %s %v", status, raw, err)
		}
	}
}

var sqlStateCode = regexp.MustCompile(`^[0-9A-Z]{5}$`)

// badSQLAnswer says what is wrong with an answer to a /_sql request that
// any client could send, "" when nothing is.
func badSQLAnswer(status int, raw []byte) string {
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // 1e400 is a JSON number, but no float64
	if err := dec.Decode(&out); err != nil {
		return "the answer is not JSON: " + err.Error()
	}
	switch status {
	case 200:
		if _, ok := out["error"]; ok {
			return "a 200 carries an error"
		}
		return ""
	case 400, 413:
		e, _ := out["error"].(map[string]any)
		code, _ := e["code"].(string)
		if !sqlStateCode.MatchString(code) || code == "XX000" {
			return fmt.Sprintf("the error's code %q is not a client's SQLSTATE", code)
		}
		return ""
	}
	return "a request of the client's own making is answered 200 or 400, never this"
}

// bodyStatements are statements with their number of parameters.
var bodyStatements = []struct {
	sql    string
	params int
}{
	{"SELECT $1::int AS i", 1},
	{"SELECT $1::text AS t, $2::int[] AS a", 2},
	{"SELECT $1::jsonb AS j", 1},
	{"SELECT $1::json AS j", 1},
	{"SELECT $1::bytea AS b", 1},
	{"SELECT $1::bytea[] AS b", 1},
	{"SELECT $1::body_mood[] AS m", 1},
	{"SELECT $1::body_pair AS p", 1},
	{"SELECT $1::point AS p", 1},
	{"SELECT $1::numeric AS n, $2::bool AS b, $3::date AS d", 3},
	{"SELECT $1::int[][] AS a", 1},
	{"SELECT $1::jsonb[] AS a", 1},
	{"SELECT $1::timestamptz AS ts, $2::interval AS iv", 2},
	{"SELECT $1::int2 AS s, $2::float8 AS f", 2},
	{"SELECT $1 AS unknown", 1},
	{"SELECT 1/$1::int AS q", 1},
	{"INSERT INTO body_t VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", 8},
	{"SELECT id, t, a, j, b, m, n, d FROM body_t WHERE id = $1", 1},
	{"UPDATE body_t SET t = $2 WHERE id = $1", 2},
	{"SELECT 1 AS one", 0},
	{"SELEC 1", 0},
	{"SELECT $2::int AS gap", 2},
	{"SELECT repeat('x', 3) AS r, NULL::body_mood AS m, '(1,a)'::body_pair AS p", 0},
}

// randomArg is one argument's JSON text, of any kind.
func randomArg(rng *rand.Rand, depth int) string {
	kinds := 14
	if depth > 7 {
		kinds = 10 // no more arrays or objects
	}
	switch rng.IntN(kinds) {
	case 0:
		return fmt.Sprint(rng.IntN(200) - 100)
	case 1:
		return []string{"1e400", "-0", "1.5", "9223372036854775808", "1e-400", "32768", "0.1e1"}[rng.IntN(7)]
	case 2:
		return []string{"true", "false"}[rng.IntN(2)]
	case 3:
		return "null"
	case 4, 5:
		return []string{`""`, `"abc"`, `"AA=="`, `"\\x00ff"`, `"2024-02-03"`, `"{1,2}"`, `"ok"`, `"(1,x)"`, `"(1,2)"`,
			`"1 day"`, `"é"`, `"not base64!"`, `"\u0000"`, `"\ud800"`, `"[1,2)"`, `"{\"a\":1}"`, `"12"`}[rng.IntN(17)]
	case 6:
		return `"` + strings.Repeat("z", rng.IntN(3000)) + `"`
	case 7, 8, 9:
		return fmt.Sprint(rng.IntN(5))
	case 10, 11:
		n := rng.IntN(4)
		elems := make([]string, n)
		for i := range elems {
			elems[i] = randomArg(rng, depth+1)
		}
		return "[" + strings.Join(elems, ",") + "]"
	case 12:
		// Arrays of arrays: of one shape or ragged.
		n, m := 1+rng.IntN(3), rng.IntN(3)
		rows := make([]string, n)
		for i := range rows {
			k := m
			if rng.IntN(3) == 0 {
				k = rng.IntN(3)
			}
			elems := make([]string, k)
			for j := range elems {
				elems[j] = fmt.Sprint(rng.IntN(9))
			}
			rows[i] = "[" + strings.Join(elems, ",") + "]"
		}
		return "[" + strings.Join(rows, ",") + "]"
	default:
		return []string{`{}`, `{"a":[1,{"b":null}]}`, `{"a":1,"a":2}`, `{"k":1e400}`}[rng.IntN(4)]
	}
}

// randomArgs is an argument list for n parameters, now and then one more
// or fewer.
func randomArgs(rng *rand.Rand, n int) string {
	switch rng.IntN(8) {
	case 0:
		n++
	case 1:
		n = max(0, n-1)
	}
	args := make([]string, n)
	for i := range args {
		args[i] = randomArg(rng, 0)
	}
	return "[" + strings.Join(args, ",") + "]"
}

// randomSQLBody is one /_sql body of any shape.
func randomSQLBody(rng *rand.Rand) string {
	pick := func() (string, int) {
		s := bodyStatements[rng.IntN(len(bodyStatements))]
		b, _ := json.Marshal(s.sql)
		return string(b), s.params
	}
	switch rng.IntN(10) {
	case 0, 1, 2, 3:
		stmt, n := pick()
		if n == 0 && rng.IntN(2) == 0 {
			return `{"stmt":` + stmt + `}`
		}
		return `{"stmt":` + stmt + `,"args":` + randomArgs(rng, n) + `}`
	case 4, 5, 6:
		stmt, n := pick()
		lists := make([]string, rng.IntN(4))
		for i := range lists {
			lists[i] = randomArgs(rng, n)
		}
		return `{"stmt":` + stmt + `,"bulk_args":[` + strings.Join(lists, ",") + `]}`
	case 7, 8:
		parts := make([]string, 1+rng.IntN(3))
		for i := range parts {
			stmt, n := pick()
			parts[i] = `{"stmt":` + stmt + `,"args":` + randomArgs(rng, n) + `}`
		}
		return `{"transaction":[` + strings.Join(parts, ",") + `]}`
	default:
		// Shapes that do not fit the API at all.
		stmt, n := pick()
		return []string{
			`{"stmt":` + stmt + `,"args":{}}`,
			`{"stmt":` + stmt + `,"bulk_args":[` + randomArg(rng, 9) + `]}`,
			`{"stmt":` + stmt + `,"args":` + randomArgs(rng, n) + `,"bulk_args":[]}`,
			`{"transaction":[` + stmt + `]}`,
			`{"stmt":null}`,
			`[` + stmt + `]`,
		}[rng.IntN(6)]
	}
}
