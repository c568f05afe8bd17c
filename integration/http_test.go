package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// httpDo sends a request and decodes the JSON answer.
func httpDo(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	overrideHeaders(req, hdr)
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil && resp.Header.Get("Content-Type") == "application/json" {
		t.Fatalf("bad JSON %q: %v", raw, err)
	}
	return resp.StatusCode, resp.Header, out
}

// overrideHeaders sets the headers of hdr on req; an empty value deletes
// the header.
func overrideHeaders(req *http.Request, hdr map[string]string) {
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
}

func basic(user, pw string) map[string]string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pw)
	return map[string]string{"Authorization": req.Header.Get("Authorization")}
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func errMessage(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const httpRules = `
[[hba]]
protocol = "http"
user = "eve"
method = "reject"

[[hba]]
protocol = "http"
user = "dave"
method = "trust"

[[hba]]
protocol = "http"
method = "password"
`

func startHTTPGateway(t *testing.T, httpSection, rules string, users []testUser) *gateway {
	return startGatewayWith(t, gwOptions{http: true, httpSection: httpSection}, rules, users)
}

// SPEC: anything that is not a number, boolean, string, timestamp, json,
// bytea or an array of those comes as PostgreSQL's own text form (what psql
// prints), arrays of any type as nested arrays, and col_types names every
// built-in type. Both request paths: one statement and a transaction.
func TestSQLOverHTTPGivesOtherTypesInPostgreSQLsTextForm(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	stmt := `SELECT '2024-02-03'::date AS d, '10:00:00.5'::time AS tm, '10:00+02'::timetz AS tz, '[1,5)'::int4range AS r, 'empty'::int4range AS e, '<a/>'::xml AS x, '127.0.0.1'::inet AS ip, row(1, 'b') AS rec, '(1,2)'::point AS pt, 1.5::money AS m, '1 day'::interval AS iv, 'NaN'::float8 AS nan, '-Infinity'::float4 AS ninf, 'Infinity'::float8 AS inf, '{{1,2},{3,NULL}}'::int[] AS grid, ARRAY[ARRAY['2024-01-01'::date], ARRAY['2024-01-02'::date]] AS dates, ARRAY[1::money, NULL] AS ms, '{}'::date[] AS none, pg_sleep(0) AS v, ARRAY['(1,1),(0,0)'::box, '(2,2),(1,1)'::box] AS boxes`
	wantRows := `[["2024-02-03","10:00:00.5","10:00:00+02","[1,5)","empty","\u003ca/\u003e","127.0.0.1","(1,b)","(1,2)","$1.50","1 day","NaN","-Infinity","Infinity",[[1,2],[3,null]],[["2024-01-01"],["2024-01-02"]],["$1.00",null],[],"","{(1,1),(0,0);(2,2),(1,1)}"]]`
	wantTypes := `["date","time","timetz","int4range","int4range","xml","inet","record","point","money","interval","float8","float4","float8","_int4","_date","_money","_date","void","_box"]`
	body, _ := json.Marshal(map[string]any{"stmt": stmt})
	tx, _ := json.Marshal(map[string]any{"transaction": []map[string]any{{"stmt": stmt}}})
	for name, req := range map[string]string{"statement": string(body), "transaction": string(tx)} {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", req, auth)
		if status != 200 {
			t.Fatalf("%s: status %d: %v", name, status, out)
		}
		if name == "transaction" {
			out = out["results"].([]any)[0].(map[string]any)
		}
		if got := jsonText(t, out["rows"]); got != wantRows {
			t.Errorf("%s rows\n got %s\nwant %s", name, got, wantRows)
		}
		if got := jsonText(t, out["col_types"]); got != wantTypes {
			t.Errorf("%s col_types\n got %s\nwant %s", name, got, wantTypes)
		}
	}
	// The text form is the session's: pgwarden passes it on, it does not
	// parse it (a date under DateStyle 'SQL, DMY' is no ISO date).
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"transaction":[
		{"stmt":"SET LOCAL datestyle = 'SQL, DMY'"}, {"stmt":"SET LOCAL intervalstyle = 'iso_8601'"},
		{"stmt":"SELECT '2024-02-03'::date AS d, '1 day'::interval AS iv, ARRAY['2024-02-03'::date] AS ds"}]}`, auth)
	if status != 200 {
		t.Fatalf("DateStyle SQL: status %d: %v", status, out)
	}
	if got := jsonText(t, out["results"].([]any)[2].(map[string]any)["rows"]); got != `[["03/02/2024","P1D",["03/02/2024"]]]` {
		t.Fatalf("DateStyle SQL rows: %s", got)
	}
}

func TestSQLOverHTTPStatementShapesAndValues(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":
		"SELECT 1::int4 AS i, 9007199254740993::int8 AS big, 123456789012345678901234.5678::numeric AS n, 1.5::float8 AS f, true AS b, $1::text AS s, NULL::text AS z, ARRAY[1,2,3] AS arr, '{\"k\": [1, \"x\"]}'::jsonb AS j, '\\xdeadbeef'::bytea AS by, '2024-02-03 04:05:06.789+00'::timestamptz AS ts, '1.5 hours'::interval AS iv",
		"args": ["héllo"]}`, auth)
	if status != 200 {
		t.Fatalf("status %d: %v", status, out)
	}
	got := jsonText(t, out["rows"])
	want := `[[1,9007199254740993,123456789012345678901234.5678,1.5,true,"héllo",null,[1,2,3],{"k":[1,"x"]},"3q2+7w==","2024-02-03T04:05:06.789Z","01:30:00"]]`
	if got != want {
		t.Fatalf("rows\n got %s\nwant %s", got, want)
	}
	if types := jsonText(t, out["col_types"]); types != `["int4","int8","numeric","float8","bool","text","text","_int4","jsonb","bytea","timestamptz","interval"]` {
		t.Fatalf("col_types %s", types)
	}
	if cols := jsonText(t, out["cols"]); !strings.HasPrefix(cols, `["i","big","n"`) {
		t.Fatalf("cols %s", cols)
	}

	// bulk_args and a transaction.
	if err := pg.Exec("DROP TABLE IF EXISTS http_t; CREATE TABLE http_t (id int PRIMARY KEY, name text); GRANT ALL ON http_t TO alice"); err != nil {
		t.Fatal(err)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"INSERT INTO http_t VALUES ($1, $2)","bulk_args":[[1,"a"],[2,"b"]]}`, auth)
	if status != 200 || jsonText(t, out) != `{"results":[{"rowcount":1},{"rowcount":1}]}` {
		t.Fatalf("bulk: %d %v", status, out)
	}
	// An argument list of the wrong length is the client's error (400
	// 22023, naming the list), as for a single statement, and nothing of
	// the request stays: pgx's own words for it were answered 500.
	for body, want := range map[string]string{
		`{"stmt":"INSERT INTO http_t VALUES ($1, $2)","bulk_args":[[5,"e"],[6]]}`:       "expected 2 arguments, got 1",
		`{"stmt":"INSERT INTO http_t VALUES ($1, $2)","bulk_args":[[5,"e"],[6,"f",7]]}`: "expected 2 arguments, got 3",
	} {
		status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, auth)
		if e, _ := out["error"].(map[string]any); status != 400 || errCode(out) != "22023" || e["message"] != want || jsonText(t, e["statement"]) != "1" {
			t.Fatalf("%s: %d %v", body, status, jsonText(t, out))
		}
	}
	// An empty list, bulk or transaction, answers an empty list (bulk_args
	// answered null).
	for _, body := range []string{`{"stmt":"INSERT INTO http_t VALUES ($1, $2)","bulk_args":[]}`, `{"transaction":[]}`} {
		status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, auth)
		if status != 200 || jsonText(t, out) != `{"results":[]}` {
			t.Fatalf("%s: %d %v", body, status, jsonText(t, out))
		}
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"transaction":[
		{"stmt":"INSERT INTO http_t VALUES (3, 'c')"},
		{"stmt":"INSERT INTO http_t VALUES (1, 'duplicate')"}]}`, auth)
	if status != 400 || errCode(out) != "23505" || jsonText(t, out["error"].(map[string]any)["statement"]) != "1" {
		t.Fatalf("failing transaction: %d %v", status, out)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT count(*) FROM http_t"}`, auth)
	if status != 200 || jsonText(t, out["rows"]) != `[[2]]` {
		t.Fatalf("the failed transaction was not rolled back: %v", out)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"transaction":[{"stmt":"INSERT INTO http_t VALUES (3, 'c')"},{"stmt":"SELECT name FROM http_t WHERE id = $1","args":[3]}]}`, auth)
	if status != 200 || jsonText(t, out) == "" || !strings.Contains(jsonText(t, out), `"rows":[["c"]]`) {
		t.Fatalf("transaction: %d %v", status, out)
	}
	// rowcount is the rows a statement returned when its tag has no
	// count (SHOW, EXPLAIN), and the tag's count otherwise.
	for stmt, want := range map[string]string{
		"SHOW server_encoding": "1", "EXPLAIN SELECT 1": "1",
		"UPDATE http_t SET name = name RETURNING id": "3", "UPDATE http_t SET name = name WHERE id = 1": "1",
		"CREATE TEMP TABLE http_rc (x int)": "0",
	} {
		status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":`+jsonText(t, stmt)+`}`, auth)
		if status != 200 || jsonText(t, out["rowcount"]) != want {
			t.Fatalf("%s: %d rowcount %v, want %s", stmt, status, out["rowcount"], want)
		}
	}
	// SQL errors are 400 with the backend's SQLSTATE.
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELEC 1"}`, auth)
	if status != 400 || errCode(out) != "42601" {
		t.Fatalf("syntax error: %d %v", status, out)
	}
}

// json and jsonb are embedded as PostgreSQL wrote them. Decoded into Go
// values they lost digits (a 64-bit id became another id), a json object's
// key order and duplicates, and 1e400 failed the whole request with a 500.
func TestJSONColumnsKeepEveryDigitAndTheirKeyOrder(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	stmt := `SELECT '{"id": 9007199254740993, "f": 1.10}'::jsonb AS b, '{"z": 1, "a": [1e400, "<x>"], "z": 2}'::json AS j, ` +
		`ARRAY['{"id": 12345678901234567890}'::jsonb, NULL] AS arr, ARRAY[['1'::json, '2'::json], ['[3]'::json, '{}'::json]] AS nested`
	want := `[[{"f":1.10,"id":9007199254740993},{"z":1,"a":[1e400,"<x>"],"z":2},[{"id":12345678901234567890},null],[[1,2],[[3],{}]]]]`
	for _, body := range []string{`{"stmt":` + jsonText(t, stmt) + `}`, `{"transaction":[{"stmt":` + jsonText(t, stmt) + `}]}`} {
		wantRawRows(t, g, auth, body, want)
	}
}

// wantRawRows posts body to /_sql and checks the answer's raw text holds
// rows as want writes them: a decoder that read numbers as floats would
// hide the very losses these tests are about.
func wantRawRows(t *testing.T, g *gateway, auth map[string]string, body, want string) {
	t.Helper()
	req, _ := http.NewRequest("POST", g.httpURL()+"/_sql?db=postgres", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	overrideHeaders(req, auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"rows":`+want) {
		t.Fatalf("%s:\n got %d %s\nwant rows %s", body, resp.StatusCode, raw, want)
	}
}

// A real (float4) prints with its own shortest digits, as psql shows it:
// widened to a float64 first, 0.1 came back as 0.10000000149011612.
func TestRealValuesKeepTheirOwnDigits(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres",
		`{"stmt":"SELECT 0.1::float4, ARRAY[0.1::float4, 2.5], 1e-7::float4, 3.4e38::float4, 'NaN'::float4"}`, basic("alice", "alice-Pass-1"))
	if got := jsonText(t, out["rows"]); status != 200 || got != `[[0.1,[0.1,2.5],1e-7,3.4e+38,"NaN"]]` {
		t.Fatalf("%d %s", status, got)
	}
}

// JSON arguments reach json and jsonb parameters as the client wrote them:
// an object keeps its key order and duplicate keys (json), every digit;
// objects and fractions inside an array stay objects and numbers. Before,
// [{"id": 1}] was stored as ["{\"id\":1}"] and [1.5] as ["1.5"], and an
// object's keys came sorted. A multi-dimensional array goes in as the
// nested arrays it comes back as. Numbers and booleans reach any parameter
// type PostgreSQL can read them as.
func TestJSONArgumentsAreStoredAsTheClientWroteThem(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	args := `[[1,"x",{"a":null},1.10,[{"b":2.50}],12345678901234567890,null,true], {"z":1,"a":[1.0,{"k":1e400}],"z":2}, [{"id":1},{"id":2}], 1.10]`
	want := `[[[1,"x",{"a":null},1.10,[{"b":2.50}],12345678901234567890,null,true],{"z":1,"a":[1.0,{"k":1e400}],"z":2},[{"id":1},{"id":2}],1.10]]`
	stmt := `SELECT $1::jsonb, $2::json, $3::jsonb[], $4::json`
	for _, body := range []string{
		`{"stmt":` + jsonText(t, stmt) + `,"args":` + args + `}`,
		`{"transaction":[{"stmt":` + jsonText(t, stmt) + `,"args":` + args + `}]}`,
	} {
		wantRawRows(t, g, auth, body, want)
	}
	// The same values still reach other parameter types as their text.
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres",
		`{"stmt":"SELECT $1::text, $2::numeric[], $3::float8, $4::text[]","args":[{"a":1.50},[1.5,2,1e-3],2.5e3,[{"a":1},1.5,"s"]]}`, auth)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["{\"a\":1.50}",[1.5,2,0.001],2500,["{\"a\":1}","1.5","s"]]]` {
		t.Fatalf("%d %s", status, got)
	}
	// Numbers and booleans go as text that PostgreSQL reads with the
	// parameter's own type: an integer fills a text, date or interval
	// parameter (pgx refused to send a binary int8 there), and an integer
	// out of an int2's range gets PostgreSQL's own error.
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres",
		`{"stmt":"SELECT $1::text, $2::date, $3::interval, $4::text, $5::int8 + 1, $6::bool","args":[42,20240102,5,true,9223372036854775806,false]}`, auth)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["42","2024-01-02","00:00:05","true",9223372036854775807,false]]` {
		t.Fatalf("numbers and booleans as text: %d %s", status, jsonText(t, out))
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT $1::int2","args":[70000]}`, auth)
	if got := jsonText(t, out); status != 400 || !strings.Contains(got, `"22003"`) {
		t.Fatalf("int2 out of range: %d %s", status, got)
	}
	// A multi-dimensional array comes back nested, and goes back the same
	// way (pgx took a nested array as one dimension of values and failed).
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres",
		`{"stmt":"SELECT $1::int[] = '{{1,2},{3,NULL}}', $1::int[], $2::numeric[], $3::jsonb","args":[[[1,2],[3,null]],[[[1.5],[2]],[[3],[4]]],[[1,2],[3,4]]]}`, auth)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[[true,[[1,2],[3,null]],[[[1.5],[2]],[[3],[4]]],[[1,2],[3,4]]]]` {
		t.Fatalf("multi-dimensional: %d %s", status, jsonText(t, out))
	}
}

// An array argument fills a parameter of a type pgx does not know (an
// enum's, a domain's or a composite's array) in every request shape, as
// PostgreSQL's array text; pgx refused it before ("cannot find encode
// plan"), and the client had to write that text itself.
func TestArraysFillParametersOfTypesPgxDoesNotKnow(t *testing.T) {
	for _, sql := range []string{
		"DROP TABLE IF EXISTS arr_t", "DROP TYPE IF EXISTS arr_mood", "DROP TYPE IF EXISTS arr_pair", "DROP DOMAIN IF EXISTS arr_pos",
		"CREATE TYPE arr_mood AS ENUM ('ok', 'sad')", "CREATE TYPE arr_pair AS (a int, b text)", "CREATE DOMAIN arr_pos AS int CHECK (VALUE > 0)",
		"CREATE TABLE arr_t (id int, m arr_mood[], p arr_pair[], n arr_pos[])", "GRANT ALL ON arr_t TO alice",
	} {
		if err := pg.Exec(sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		pg.Exec("DROP TABLE IF EXISTS arr_t; DROP TYPE arr_mood; DROP TYPE arr_pair; DROP DOMAIN arr_pos")
	})
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	for _, body := range []string{
		`{"stmt":"INSERT INTO arr_t VALUES (1, $1, $2, $3)","args":[["ok",null,"sad"],["(1,x)","(2,\"y z\")"],[[1,2],[3,4]]]}`,
		`{"stmt":"INSERT INTO arr_t VALUES ($1, $2, $3, $4)","bulk_args":[[2,["sad"],[],[5]],[3,[],["(3,\"a,b\")"],[]]]}`,
		`{"transaction":[{"stmt":"INSERT INTO arr_t VALUES (4, $1, NULL, NULL)","args":[["ok"]]}]}`,
	} {
		if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, auth); status != 200 {
			t.Fatalf("%s: %d %s", body, status, jsonText(t, out))
		}
	}
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT id, m::text, p::text, n::text FROM arr_t ORDER BY id"}`, auth)
	want := `[[1,"{ok,NULL,sad}","{\"(1,x)\",\"(2,\\\"y z\\\")\"}","{{1,2},{3,4}}"],[2,"{sad}","{}","{5}"],[3,"{}","{\"(3,\\\"a,b\\\")\"}","{}"],[4,"{ok}",null,null]]`
	if got := jsonText(t, out["rows"]); status != 200 || got != want {
		t.Fatalf("stored:\n got %s\nwant %s", got, want)
	}
	// The type's own input still judges every element.
	for body, code := range map[string]string{
		`{"stmt":"SELECT $1::arr_mood[]","args":[["ok","bad"]]}`: "22P02",
		`{"stmt":"SELECT $1::arr_pos[]","args":[[1,-1]]}`:        "23514",
		`{"stmt":"SELECT $1::arr_mood[]","args":[[["ok"],[]]]}`:  "22P02",
	} {
		if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, auth); status != 400 || errCode(out) != code {
			t.Fatalf("%s: %d %s, want %s", body, status, jsonText(t, out), code)
		}
	}
}

// A bytea value read over HTTP (base64) and written back as an argument is
// stored unchanged, in every request shape; PostgreSQL's hex form is
// accepted too, and text that is neither is refused, not stored as its
// characters. Before, a bytea argument went to PostgreSQL as text input,
// and the base64 read back was stored as its own ASCII.
func TestByteaArgumentsTakeTheBase64TheyComeBackIn(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	sql := func(body string) (int, map[string]any) {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, auth)
		return status, out
	}
	// Bytes no text form keeps: a zero byte, a high byte, a backslash.
	status, out := sql(`{"stmt":"SELECT '\\x00ff5c41'::bytea AS b"}`)
	read := jsonText(t, out["rows"])
	if status != 200 || read != `[["AP9cQQ=="]]` {
		t.Fatalf("read: %d %s", status, read)
	}
	for _, body := range []string{
		`{"stmt":"SELECT $1::bytea = '\\x00ff5c41'::bytea, $1::bytea","args":["AP9cQQ=="]}`,
		`{"stmt":"SELECT $1::bytea = '\\x00ff5c41'::bytea, $1::bytea","args":["AP9cQQ"]}`,
		`{"stmt":"SELECT $1::bytea = '\\x00ff5c41'::bytea, $1::bytea","args":["\\x00ff5c41"]}`,
		`{"transaction":[{"stmt":"SELECT $1::bytea = '\\x00ff5c41'::bytea, $1::bytea","args":["AP9cQQ=="]}]}`,
	} {
		status, out := sql(body)
		got := jsonText(t, out)
		if status != 200 || !strings.Contains(got, `[[true,"AP9cQQ=="]]`) {
			t.Fatalf("%s: %d %s", body, status, got)
		}
	}
	status, out = sql(`{"stmt":"SELECT $1::bytea = ANY($2::bytea[]), $3::text","args":["AP9cQQ==",["AA==","AP9cQQ==",null],"AP9cQQ=="]}`)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[[true,"AP9cQQ=="]]` {
		t.Fatalf("bytea[] and text beside it: %d %s", status, got)
	}
	if status, out := sql(`{"stmt":"SELECT $1::bytea","args":["plain text!"]}`); status != 400 || !strings.Contains(jsonText(t, out), "base64") {
		t.Fatalf("text that is not base64: %d %s", status, jsonText(t, out))
	}
	if err := pg.Exec("DROP TABLE IF EXISTS http_blobs; CREATE TABLE http_blobs (b bytea); GRANT ALL ON http_blobs TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP TABLE IF EXISTS http_blobs") })
	if status, out := sql(`{"stmt":"INSERT INTO http_blobs VALUES ($1)","bulk_args":[["AP9cQQ=="],["AA=="]]}`); status != 200 {
		t.Fatalf("bulk: %d %s", status, jsonText(t, out))
	}
	status, out = sql(`{"stmt":"SELECT b FROM http_blobs ORDER BY b DESC"}`)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["AP9cQQ=="],["AA=="]]` {
		t.Fatalf("bulk rows: %d %s", status, got)
	}
}

// COPY FROM STDIN and COPY TO STDOUT have no client stream to travel over
// HTTP: PostgreSQL would wait for rows until http.statement_timeout (with a
// backend held), or send rows that vanished behind a 200. Each request
// shape refuses them at once with 0A000 and rolls back what came before;
// a COPY with a server file still reaches PostgreSQL.
func TestCopyWithTheClientIsRefusedOverHTTP(t *testing.T) {
	g := startHTTPGateway(t, "statement_timeout = \"20s\"\ndefault_database = \"postgres\"", httpRules,
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	if err := pg.Exec("DROP TABLE IF EXISTS http_copy; CREATE TABLE http_copy (a int); GRANT ALL ON http_copy TO alice"); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		`{"stmt":"COPY http_copy FROM STDIN"}`,
		`{"stmt":"/* c */ copy http_copy (a) from stdin with (format csv)"}`,
		`{"stmt":"COPY (SELECT ')' FROM http_copy) TO STDOUT"}`,
		`{"stmt":"COPY http_copy FROM STDIN","bulk_args":[[],[]]}`,
		`{"transaction":[{"stmt":"INSERT INTO http_copy VALUES (1)"},{"stmt":"COPY http_copy FROM STDIN"}]}`,
		`{"transaction":[{"stmt":"INSERT INTO http_copy VALUES (1)"},{"stmt":"COPY (SELECT 1) TO STDOUT"}]}`,
	} {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", body, auth)
		e, _ := out["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if status != 400 || errCode(out) != "0A000" || !strings.Contains(msg, "not supported over HTTP") {
			t.Fatalf("%s: %d %v", body, status, out)
		}
		if strings.Contains(body, "transaction") && jsonText(t, e["statement"]) != "1" {
			t.Fatalf("%s: the refusal names no statement: %v", body, out)
		}
	}
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT count(*) FROM http_copy"}`, auth)
	if status != 200 || jsonText(t, out["rows"]) != `[[0]]` {
		t.Fatalf("a refused transaction left rows: %d %v", status, out)
	}
	// A COPY with a file on the server is PostgreSQL's to judge (alice may
	// not read server files).
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"COPY http_copy FROM '/nonexistent/stdin'"}`, auth)
	if status != 400 || errCode(out) != "42501" {
		t.Fatalf("COPY from a server file: %d %v", status, out)
	}
}

func TestSQLOverHTTPLimits(t *testing.T) {
	g := startHTTPGateway(t, "max_rows = 5\nmax_result_bytes = 1000\nstatement_timeout = \"1s\"\nmax_body_bytes = 2000\ndefault_database = \"postgres\"", httpRules,
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT generate_series(1, 6)"}`, auth)
	if status != 400 || errCode(out) != "54000" {
		t.Fatalf("max_rows: %d %v", status, out)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT generate_series(1, 5)"}`, auth)
	if status != 200 || jsonText(t, out["rowcount"]) != "5" {
		t.Fatalf("5 rows: %d %v", status, out)
	}
	// max_result_bytes bounds the rows' JSON, not PostgreSQL's bytes: 200
	// control characters are 1,200 bytes of JSON. A value far over the
	// bound is refused as its message arrives, and the next request gets
	// a working connection.
	for _, body := range []string{
		`{"stmt":"SELECT repeat('x', 1001)"}`,
		`{"stmt":"SELECT repeat(chr(1), 200)"}`,
		`{"stmt":"SELECT repeat('<', 200)"}`,
		`{"stmt":"SELECT repeat('x', 300) FROM generate_series(1, 4)"}`,
		`{"stmt":"SELECT repeat('x', 3000000)"}`,
		`{"transaction":[{"stmt":"SELECT repeat('x', 600)"},{"stmt":"SELECT repeat('y', 600)"}]}`,
	} {
		status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql", body, auth)
		e, _ := out["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if status != 400 || errCode(out) != "54000" || !strings.Contains(msg, "http.max_result_bytes (1000 bytes)") {
			t.Fatalf("%s: %d %v", body, status, out)
		}
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql", `{"transaction":[{"stmt":"SELECT repeat('x', 400)"},{"stmt":"SELECT repeat('y', 400)"}]}`, auth)
	if status != 200 || !strings.Contains(jsonText(t, out), strings.Repeat("y", 400)) {
		t.Fatalf("a transaction within max_result_bytes: %d %v", status, out)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT repeat(chr(1), 100)"}`, auth)
	if status != 200 || jsonText(t, out["rows"]) != `[["`+strings.Repeat(`\u0001`, 100)+`"]]` {
		t.Fatalf("a result within max_result_bytes: %d %v", status, out)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT pg_sleep(5)"}`, auth)
	if status != 400 || errCode(out) != "57014" {
		t.Fatalf("statement_timeout: %d %v", status, out)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT '`+strings.Repeat("x", 3000)+`'"}`, auth)
	if status != 413 {
		t.Fatalf("max_body_bytes: %d %v", status, out)
	}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		h := basic("alice", "alice-Pass-1")
		h["Content-Type"] = ct
		status, _, _ = httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT 1"}`, h)
		if status != 415 {
			t.Fatalf("Content-Type %s: %d", ct, status)
		}
	}
	// A compressed body, or one that says it is, is refused as such, not
	// read as its compressed bytes (a gzip body was "not valid UTF-8") or
	// as what it says it is not (br over plain JSON ran).
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"stmt":"SELECT 1"}`))
	zw.Close()
	for _, c := range []struct{ coding, body string }{{"gzip", gz.String()}, {"br", `{"stmt":"SELECT 1"}`}, {"identity, gzip", gz.String()}} {
		h := basic("alice", "alice-Pass-1")
		h["Content-Encoding"] = c.coding
		status, hdr, out := httpDo(t, "POST", g.httpURL()+"/_sql", c.body, h)
		if status != 415 || hdr.Get("Accept-Encoding") != "identity" || !strings.Contains(jsonText(t, out), "Content-Encoding") {
			t.Fatalf("Content-Encoding %s: %d %v %v", c.coding, status, hdr, out)
		}
	}
	h := basic("alice", "alice-Pass-1")
	h["Content-Encoding"] = "identity"
	if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt":"SELECT 1"}`, h); status != 200 {
		t.Fatalf("Content-Encoding identity: %d %v", status, out)
	}
	status, _, _ = httpDo(t, "POST", g.httpURL()+"/_sql", `not json`, auth)
	if status != 400 {
		t.Fatalf("not JSON: %d", status)
	}
	status, _, _ = httpDo(t, "GET", g.httpURL()+"/_sql?stmt=SELECT+1", "", auth)
	if status != 405 {
		t.Fatalf("GET /_sql must not run SQL: %d", status)
	}
}

func TestHTTPAuthenticationMethods(t *testing.T) {
	g := startHTTPGateway(t, `default_user = "dave"`, httpRules, []testUser{
		{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2", algo: "bcrypt"},
	})
	sql := `{"stmt":"SELECT current_user"}`
	url := g.httpURL() + "/_sql?db=postgres"
	status, _, out := httpDo(t, "POST", url, sql, basic("bob", "bob-Pass-2"))
	if status != 200 || jsonText(t, out["rows"]) != `[["bob"]]` {
		t.Fatalf("Basic: %d %v", status, out)
	}
	status, _, out = httpDo(t, "POST", url, `{"stmt":"SELECT current_user","credentials":{"user":"alice","password":"alice-Pass-1"}}`, nil)
	if status != 200 || jsonText(t, out["rows"]) != `[["alice"]]` {
		t.Fatalf("inline credentials: %d %v", status, out)
	}
	// No credentials: the default user, under its trust rule.
	status, _, out = httpDo(t, "POST", url, sql, nil)
	if status != 200 || jsonText(t, out["rows"]) != `[["dave"]]` {
		t.Fatalf("default user: %d %v", status, out)
	}
	// Wrong credentials never fall back to the default user, and an
	// unknown user gets the very same answer as a wrong password.
	_, h1, wrong := httpDo(t, "POST", url, sql, basic("alice", "nope-nope"))
	s2, h2, unknown := httpDo(t, "POST", url, sql, basic("alice", "alice-Pass-X"))
	if s2 != 401 || h1.Get("WWW-Authenticate") != `Basic realm="pgwarden", charset="UTF-8"` || h1.Get("WWW-Authenticate") != h2.Get("WWW-Authenticate") {
		t.Fatalf("401: %d %v", s2, h1)
	}
	_ = wrong
	_, _, ghost := httpDo(t, "POST", url, sql, basic("ghost", "whatever1"))
	if jsonText(t, unknown) != strings.Replace(jsonText(t, ghost), "ghost", "alice", 1) {
		t.Fatalf("unknown and wrong differ:\n%v\n%v", unknown, ghost)
	}
	// Reject is 403.
	status, _, out = httpDo(t, "POST", url, sql, basic("eve", "anything1"))
	if status != 403 || errCode(out) != "28000" {
		t.Fatalf("reject: %d %v", status, out)
	}
	// Malformed Basic headers are 401s, not crashes.
	for _, h := range []string{"Basic !!!", "Basic " + "bm9jb2xvbg==", "Basic OnBhc3N3b3Jk", "Digest x", "Basic"} {
		status, _, _ = httpDo(t, "POST", url, sql, map[string]string{"Authorization": h})
		if status != 401 {
			t.Fatalf("%q: %d", h, status)
		}
	}
	// Credentials in the URL are refused.
	status, _, _ = httpDo(t, "POST", url+"&access_token=abc", sql, nil)
	if status != 400 {
		t.Fatalf("token in URL: %d", status)
	}
}

func TestHTTPCustomFailureStatusAndTokenEndpoint(t *testing.T) {
	g := startHTTPGateway(t, "auth_failure_status = 499", httpRules+`
[tokens]
default_ttl = "1h"
max_ttl = "2h"
`, []testUser{{name: "alice", password: "alice-Pass-1", extra: `secret = "` + strings.Repeat("QUJD", 11) + `"` + "\n"},
		{name: "bob", password: "bob-Pass-2"}})
	// bob has no secret yet: the first token makes one.
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_token", "", basic("bob", "bob-Pass-2"))
	if status != 200 || out["token"] == nil {
		t.Fatalf("/_token for a user without a secret: %d %v", status, out)
	}
	noteSecret(out["token"].(string))
	users, _ := os.ReadFile(filepath.Join(g.dir, "users.toml"))
	if !strings.Contains(string(users), "secret") || strings.Count(string(users), "secret = ") != 2 {
		t.Fatalf("bob's secret was not stored:\n%s", users)
	}
	status, _, _ = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "bad-bad-bad"))
	if status != 499 {
		t.Fatalf("auth_failure_status: %d", status)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_token", "", basic("alice", "alice-Pass-1"))
	if status != 200 || out["token"] == nil {
		t.Fatalf("/_token: %d %v", status, out)
	}
	exp, err := time.Parse(time.RFC3339, out["expires_at"].(string))
	if err != nil || time.Until(exp) > time.Hour+time.Minute || time.Until(exp) < 50*time.Minute {
		t.Fatalf("expires_at %v: %v", out["expires_at"], err)
	}
	noteSecret(out["token"].(string))
	status, _, _ = httpDo(t, "POST", g.httpURL()+"/_token", `{"expire":"3h"}`, basic("alice", "alice-Pass-1"))
	if status != 400 {
		t.Fatalf("a token over max_ttl was issued: %d", status)
	}
	// A lifetime of zero is no lifetime, not the default one.
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_token", `{"expire":"0s"}`, basic("alice", "alice-Pass-1"))
	if status != 400 || errCode(out) != "22023" {
		t.Fatalf("a token of no lifetime: %d %v", status, out)
	}
	// A body /_token cannot read names /_token, not /_sql.
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_token", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
	if status != 400 || errCode(out) != "08P01" || !strings.Contains(errMessage(out), "not valid JSON for /_token") {
		t.Fatalf("an unknown key at /_token: %d %v", status, out)
	}
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	own := ownCluster(t)
	g := startGatewayWith(t, gwOptions{http: true, backendPort: own.port}, httpRules+passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	if s, _, _ := httpDo(t, "GET", g.httpURL()+"/healthz", "", nil); s != 200 {
		t.Fatalf("healthz %d", s)
	}
	if s, _, _ := httpDo(t, "GET", g.httpURL()+"/readyz", "", nil); s != 200 {
		t.Fatalf("readyz %d", s)
	}
	httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
	httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "wrong-wrong"))
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, c, "SELECT 1")
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 1)
	resp, err := http.Get(g.httpURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`pgwarden_auth_attempts_total{method="password",protocol="http",result="ok"} 1`,
		`pgwarden_auth_attempts_total{method="password",protocol="http",result="failed"} 1`,
		`pgwarden_auth_attempts_total{method="password",protocol="pg",result="ok"} 1`,
		`pgwarden_client_connections{protocol="pg"} 1`,
		`pgwarden_reloads_total{result="ok"} 1`,
		`pgwarden_auth_duration_seconds_count{method="password",protocol="pg",result="ok"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Backend down: readiness says so, SQL is a 502, health stays 200.
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	// /readyz answers from its last look for up to 250 ms.
	waitFor(t, 2*time.Second, "readyz says the backend is down", func() bool {
		s, _, _ := httpDo(t, "GET", g.httpURL()+"/readyz", "", nil)
		return s == 503
	})
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=app_prod", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
	if status != 502 || errCode(out) != "08006" {
		t.Fatalf("backend down: %d %v", status, out)
	}
	if s, _, _ := httpDo(t, "GET", g.httpURL()+"/healthz", "", nil); s != 200 {
		t.Fatalf("healthz %d", s)
	}
}

func TestHTTPSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, filepath.Join(dir, "certs"), "alice", "bob")
	port := freePortPair()
	g := &gateway{t: t, dir: dir, port: port, sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}),
		opts: gwOptions{http: true, server: "http_tls = true"}}
	g.writeConfig(tlsSection + `
[[hba]]
protocol = "http"
method = "cert"
`)
	g.writeUsers(nil)
	g.start()
	url := fmt.Sprintf("https://localhost:%d/_sql?db=postgres", port+1)
	client := func(name string) *http.Client { return p.httpsClient(t, name) }
	post := func(c *http.Client, user string) (int, string) { return postCurrentUser(t, c, url, user) }
	if s, b := post(client("alice"), ""); s != 200 || !strings.Contains(b, `[["alice"]]`) {
		t.Fatalf("mTLS as alice: %d %s", s, b)
	}
	if s, b := post(client("alice"), "alice"); s != 200 {
		t.Fatalf("mTLS with a matching Basic user: %d %s", s, b)
	}
	if s, _ := post(client("alice"), "bob"); s != 401 {
		t.Fatalf("Basic user other than the CN: %d", s)
	}
	if s, _ := post(client(""), ""); s != 401 {
		t.Fatalf("no client certificate: %d", s)
	}
}

// A client that does not read its answer holds no backend: the answer is
// written after the connection went back to its pool. Before, /_sql wrote
// while it held the connection, so ten clients asking for an answer larger
// than the socket buffers and never reading it held every connection of
// their pool (10), and every other request of that role and database
// waited until http.statement_timeout (57014).
func TestClientsThatDoNotReadTheirAnswersHoldNoBackend(t *testing.T) {
	g := startHTTPGateway(t, `statement_timeout = "5s"`, httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	body := `{"stmt":"SELECT repeat('x', 6000000)"}`
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-Pass-1"))
	req := fmt.Sprintf("POST /_sql?db=postgres HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", auth, len(body), body)
	for i := 0; i < 12; i++ {
		c, err := net.Dial("tcp", g.httpURL()[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4096)
		defer c.Close()
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // their statements run and their answers stall
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
	if got := jsonText(t, out["rows"]); status != 200 || got != `[[1]]` {
		t.Fatalf("a request beside clients that do not read: %d %s", status, jsonText(t, out))
	}
}

// requestMemoryInUse is what the HTTP requests in progress hold of
// http.max_request_memory, by the gateway's gauge.
func requestMemoryInUse(t *testing.T, g *gateway) float64 {
	return sampleValue(t, scrapeMetrics(t, g.httpURL()), "pgwarden_http_request_memory_bytes")
}

// waitNoRequestMemoryInUse waits up to 20 s for every byte taken of
// http.max_request_memory to be given back.
func waitNoRequestMemoryInUse(t *testing.T, g *gateway) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for requestMemoryInUse(t, g) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v bytes still in use after every client left", requestMemoryInUse(t, g))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dialFrom dials the gateway's HTTP listener from a loopback address of
// its own (a source of its own to the gateway).
func dialFrom(t *testing.T, g *gateway, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", g.httpURL()[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// postFrom sends one /_sql request from a loopback address of its own and
// reads the answer: status, Retry-After, the decoded body.
func postFrom(t *testing.T, g *gateway, from, query, body string, hdr map[string]string) (int, string, map[string]any) {
	t.Helper()
	c := dialFrom(t, g, from)
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	req, _ := http.NewRequest("POST", g.httpURL()+"/_sql"+query, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	overrideHeaders(req, hdr)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	dec.Decode(&out)
	return resp.StatusCode, resp.Header.Get("Retry-After"), out
}

// The requests in progress share http.max_request_memory, and one source
// (a client address) may take half of it: bounds per request still let
// many requests at once take the gateway's memory (36 requests for a 30
// MB value took it to 2.9 GB before the bound), and every wire session
// with it. Clients that do not read hold their answers. From one
// address they fill only its half: its next such answer is refused 503
// 53200 with Retry-After, while another address is answered. Once three addresses fill the budget, a
// fourth address's large answer is refused, a small one still passes; and
// once those clients leave, nothing stays taken and the answers come
// whole.
func TestLargeAnswersAtOnceStayWithinMaxRequestMemory(t *testing.T) {
	const budget = 64 << 20
	g := startHTTPGateway(t, fmt.Sprintf("max_result_bytes = %d\nmax_request_memory = %d\nmax_rows = 100000\nstatement_timeout = \"20s\"", 8<<20, budget),
		httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	used := func() float64 { return requestMemoryInUse(t, g) }
	if v := sampleValue(t, scrapeMetrics(t, g.httpURL()), "pgwarden_http_request_memory_limit_bytes"); v != budget {
		t.Fatalf("pgwarden_http_request_memory_limit_bytes = %v, want %d", v, budget)
	}
	// About 7.4 MB of JSON in 70,000 small rows, and one 6 MB value: both
	// past what the loopback socket buffers take, so an answer waits for
	// a client that does not read it.
	const rows = `{"stmt":"SELECT repeat('x', 100) AS v FROM generate_series(1, 70000)"}`
	const value = `{"stmt":"SELECT repeat('x', 6000000) AS v"}`
	auth := basic("alice", "alice-Pass-1")
	raw := fmt.Sprintf("POST /_sql?db=postgres HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", auth["Authorization"], len(rows), rows)
	var holders []net.Conn
	defer func() {
		for _, c := range holders {
			c.Close()
		}
	}()
	// settled waits until the count stops moving: the last holder's
	// answer has taken its room and waits, or was refused.
	settled := func() {
		last := -1.0
		for i := 0; i < 100; i++ {
			time.Sleep(100 * time.Millisecond)
			v := used()
			if v == last {
				return
			}
			last = v
		}
		t.Fatal("the memory in use never settled")
	}
	// Eight such answers need about 70 MB: from one address, the ones
	// past its half find no room.
	hold := func(from string) {
		for i := 0; i < 8; i++ {
			c := dialFrom(t, g, from)
			c.(*net.TCPConn).SetReadBuffer(4096)
			holders = append(holders, c)
			if _, err := c.Write([]byte(raw)); err != nil {
				t.Fatal(err)
			}
			settled()
		}
	}
	refused := func(from, body, why string) {
		t.Helper()
		status, retry, out := postFrom(t, g, from, "?db=postgres", body, auth)
		if status != 503 || errCode(out) != "53200" || retry != "1" ||
			!strings.Contains(errMessage(out), fmt.Sprintf("http.max_request_memory (%d bytes)", budget)) {
			t.Fatalf("%s, %s: %d %q %s %s", why, body, status, retry, errCode(out), errMessage(out))
		}
	}
	answered := func(from, body, why string) {
		t.Helper()
		status, _, out := postFrom(t, g, from, "?db=postgres", body, auth)
		got, _ := out["rows"].([]any)
		if status != 200 || (body == rows && len(got) != 70000) || (body == value && (len(got) != 1 || len(got[0].([]any)[0].(string)) != 6000000)) {
			t.Fatalf("%s, %s: %d %v", why, body, status, errMessage(out))
		}
	}
	hold("127.0.0.1")
	if v := used(); v < 2*7_000_000 || v > budget/2 {
		t.Fatalf("one address's clients that do not read hold %v bytes of %d", v, budget)
	}
	// The same answer as the holders' finds no room where theirs did
	// not: an answer of one 6 MB value might still fit.
	refused("127.0.0.1", rows, "its address's half in use")
	answered("127.0.0.2", rows, "another address")
	answered("127.0.0.2", value, "another address")
	hold("127.0.0.2")
	hold("127.0.0.3")
	if v := used(); v <= budget/2 || v > budget {
		t.Fatalf("three addresses' clients that do not read hold %v bytes of %d", v, budget)
	}
	refused("127.0.0.4", rows, "the budget in use")
	// A small answer needs none of it.
	if status, _, out := postFrom(t, g, "127.0.0.4", "?db=postgres", `{"stmt":"SELECT 1 AS n"}`, auth); status != 200 {
		t.Fatalf("a small answer beside a full budget: %d %v", status, out)
	}
	for _, c := range holders {
		c.Close()
	}
	holders = nil
	waitNoRequestMemoryInUse(t, g)
	answered("127.0.0.1", rows, "once the budget is free")
	answered("127.0.0.1", value, "once the budget is free")
}

// Bodies are read before their credentials are proved (they can carry
// them), so clients that prove nothing could hold max_body_bytes each,
// sent but for their last byte, until ReadTimeout: 900 such withheld 1 MiB
// bodies, with no credentials, took the gateway to 1.08 GB. A body past
// 64 KiB takes twice its size from http.max_request_memory before it is
// read; bodies not yet proved take at most a quarter of it, and those of
// one address half of that quarter. Past either the request is 503 53200
// before its body is read, while a small request passes; once those
// clients leave nothing stays taken, and a proved request's large body
// is read.
func TestBodiesNotYetProvedTakeAtMostAQuarterOfMaxRequestMemory(t *testing.T) {
	const budget = 32 << 20
	g := startHTTPGateway(t, fmt.Sprintf("max_body_bytes = %d\nmax_result_bytes = %d\nmax_request_memory = %d\ndefault_database = \"postgres\"", 1<<20, 8<<20, budget),
		httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	used := func() float64 { return requestMemoryInUse(t, g) }
	const size = 1 << 20
	head := fmt.Sprintf("POST /_sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
	part := `{"stmt":"SELECT '` + strings.Repeat("x", size/2)
	var holders []net.Conn
	defer func() {
		for _, c := range holders {
			c.Close()
		}
	}()
	// Each withheld body takes a little over 2 MiB (twice its
	// Content-Length and one byte): one address's half of the quarter (4
	// MiB) holds one, the quarter (8 MiB) three.
	hold := func(from string, want float64) {
		t.Helper()
		c := dialFrom(t, g, from)
		holders = append(holders, c)
		if _, err := c.Write([]byte(head + part)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for used() < want {
			if time.Now().After(deadline) {
				t.Fatalf("withheld bodies hold %v bytes, want %v", used(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	refused := func(from, why string) {
		t.Helper()
		c := dialFrom(t, g, from)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(head + part)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", why, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(raw), `"53200"`) ||
			!strings.Contains(string(raw), fmt.Sprintf("http.max_request_memory (%d bytes)", budget)) {
			t.Fatalf("%s: %d %s", why, resp.StatusCode, raw)
		}
	}
	hold("127.0.0.1", 2*size)
	refused("127.0.0.1", "a second withheld body of one address")
	hold("127.0.0.2", 2*2*size)
	hold("127.0.0.3", 3*2*size)
	refused("127.0.0.4", "a withheld body past the quarter")
	auth := basic("alice", "alice-Pass-1")
	if status, _, out := postFrom(t, g, "127.0.0.4", "", `{"stmt":"SELECT 1 AS n"}`, auth); status != 200 {
		t.Fatalf("a small body beside them: %d %v", status, out)
	}
	for _, c := range holders {
		c.Close()
	}
	holders = nil
	waitNoRequestMemoryInUse(t, g)
	big := `{"stmt":"SELECT length('` + strings.Repeat("x", 900000) + `') AS n"}`
	if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", big, auth); status != 200 || jsonText(t, out["rows"]) != "[[900000]]" {
		t.Fatalf("a large body once they left: %d %v", status, errMessage(out))
	}
}

// Bytes that are not UTF-8 are refused, never replaced. A SQL_ASCII
// database stores and returns whatever bytes it was given; before, a text
// value with such bytes came back with each of them as \ufffd (written
// back, the value was stored changed), and a json value came back with the
// bytes as they were, making the answer itself invalid JSON. A transaction
// that changes client_encoding is refused and rolled back: its later
// statements' UTF-8 text would have been read as LATIN1 ('é' stored as
// 'Ã©').
func TestValuesThatAreNotUTF8AreRefusedNotReplaced(t *testing.T) {
	for _, stmt := range []string{"DROP DATABASE IF EXISTS sqlascii_db",
		"CREATE DATABASE sqlascii_db ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"} {
		if err := pg.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { pg.Exec("DROP DATABASE IF EXISTS sqlascii_db") })
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	post := func(db, body string) (int, map[string]any) {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db="+db, body, auth)
		return status, out
	}
	raw := `convert_from('\xff41'::bytea, 'SQL_ASCII')`
	for _, stmt := range []string{
		"SELECT 1 AS n, " + raw + " AS a",
		"SELECT 1 AS n, convert_from('\\x22ff4122'::bytea, 'SQL_ASCII')::json AS a",
		"SELECT 1 AS n, ARRAY[" + raw + "] AS a",
		"SELECT 1 AS n, convert_from('\\x22ff22'::bytea, 'SQL_ASCII')::jsonb AS a",
	} {
		for _, body := range []string{`{"stmt":` + jsonText(t, stmt) + `}`, `{"transaction":[{"stmt":` + jsonText(t, stmt) + `}]}`} {
			status, out := post("sqlascii_db", body)
			e, _ := out["error"].(map[string]any)
			msg, _ := e["message"].(string)
			if status != 400 || errCode(out) != "22021" || !strings.Contains(msg, `in column "a" of row 1`) {
				t.Errorf("%s: %d %s", body, status, jsonText(t, out))
			}
		}
	}
	// The way the message names reads the bytes, and UTF-8 text is as it was.
	status, out := post("sqlascii_db", `{"stmt":`+jsonText(t, "SELECT convert_to("+raw+"::text, 'SQL_ASCII') AS b, 'é' AS u")+`}`)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["/0E=","é"]]` {
		t.Errorf("convert_to and UTF-8 text: %d %s", status, jsonText(t, out))
	}
	status, out = post("postgres", `{"transaction":[{"stmt":"SET client_encoding = 'LATIN1'"},{"stmt":"SELECT $1::text","args":["é"]}]}`)
	if text := jsonText(t, out); status != 400 || errCode(out) != "0A000" || !strings.Contains(text, `"statement":0`) || !strings.Contains(text, "LATIN1") {
		t.Errorf("a transaction that changes client_encoding: %d %s", status, jsonText(t, out))
	}
	// A \u escape of half a surrogate pair is valid JSON but no character:
	// encoding/json had stored U+FFFD for it. A whole pair is a character.
	status, out = post("postgres", `{"stmt":"SELECT $1::text AS v","args":["a\ud800b"]}`)
	if status != 400 || errCode(out) != "22021" || !strings.Contains(jsonText(t, out), `\\ud800`) {
		t.Errorf("a lone surrogate escape: %d %s", status, jsonText(t, out))
	}
	status, out = post("postgres", `{"stmt":"SELECT $1::text AS v","args":["a\ud83d\ude00b"]}`)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["a😀b"]]` {
		t.Errorf("a surrogate pair: %d %s", status, jsonText(t, out))
	}
}

// A body that names one of pgwarden's keys twice, or in another case, is
// refused before anything runs: encoding/json took the last of the two
// and matched names regardless of case, so the statement that ran was not
// the one a proxy or an audit log reading the body saw.
func TestAnAmbiguousBodyIsRefused(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	for _, body := range []string{
		`{"stmt":"SELECT 1","stmt":"SELECT 2"}`,
		`{"stmt":"SELECT 1","STMT":"SELECT 2"}`,
		`{"transaction":[{"stmt":"SELECT 1","Stmt":"SELECT 2"}]}`,
	} {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, auth)
		if status != 400 || errCode(out) != "08P01" || !strings.Contains(jsonText(t, out), "ambiguous") {
			t.Errorf("%s: %d %s", body, status, jsonText(t, out))
		}
	}
	// Keys inside the arguments are the client's data.
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT $1::json::text AS j","args":[{"a":1,"a":2}]}`, auth)
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["{\"a\":1,\"a\":2}"]]` {
		t.Errorf("duplicate keys in a json argument: %d %s", status, jsonText(t, out))
	}
	// So is a query string that names db twice (Go took the first, a
	// proxy may take the last) or that does not parse (Go skipped the
	// pair it could not read).
	for _, qs := range []string{"db=postgres&db=template1", "db=template1;db=postgres", "x=%zz&db=postgres"} {
		for _, path := range []string{"/_sql", "/_token"} {
			status, _, out := httpDo(t, "POST", g.httpURL()+path+"?"+qs, `{"stmt":"SELECT current_database()"}`, auth)
			if path == "/_token" {
				status, _, out = httpDo(t, "POST", g.httpURL()+path+"?"+qs, "", auth)
			}
			if status != 400 || errCode(out) != "08P01" {
				t.Errorf("%s?%s: %d %s", path, qs, status, jsonText(t, out))
			}
		}
	}
}

// /readyz needs no credentials, and each look at the backend is a
// connection PostgreSQL forks a process for: a flood of /readyz makes at
// most a few of them a second, not one per request as before.
func TestAFloodOfReadinessChecksCostsTheBackendFewConnections(t *testing.T) {
	var accepted atomic.Int64
	port := localServer(t, func(c net.Conn) {
		accepted.Add(1)
		defer c.Close()
		var req [8]byte
		if _, err := io.ReadFull(c, req[:]); err == nil {
			c.Write([]byte{'N'}) // as PostgreSQL without TLS answers an SSLRequest
		}
	})
	g := startGatewayWith(t, gwOptions{http: true, backendPort: port}, httpRules, nil)
	start := time.Now()
	var wg sync.WaitGroup
	var ok, other atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				resp, err := http.Get(g.httpURL() + "/readyz")
				if err != nil {
					other.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if ok.Load() != 800 || other.Load() != 0 {
		t.Fatalf("readiness answers: %d ready, %d other", ok.Load(), other.Load())
	}
	if max := int64(took/(250*time.Millisecond)) + 2; accepted.Load() > max {
		t.Fatalf("800 readiness checks in %v opened %d backend connections (at most %d expected)", took.Round(time.Millisecond), accepted.Load(), max)
	}
	t.Logf("800 readiness checks in %v opened %d backend connections", took.Round(time.Millisecond), accepted.Load())
}

// Open HTTP connections are bounded (by twice server.max_connections),
// idle keep-alive ones included: before, a client that made one request on
// each of thousands of connections kept them all (a descriptor and about
// 12 KiB each) until the process ran out of descriptors. Past
// max_connections the idle ones are closed to make room, and a new client
// is served.
func TestIdleHTTPConnectionsAreBoundedByMaxConnections(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, server: "max_connections = 20"}, httpRules, nil)
	addr := g.httpURL()[len("http://"):]
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	time.Sleep(300 * time.Millisecond)
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	if open > 45 {
		t.Fatalf("%d of 200 idle connections are still open with max_connections = 20 (at most twice that may be)", open)
	}
	// A new client is served (its first try may meet a full house and
	// make room; HTTP clients try a closed connection again).
	waitFor(t, 2*time.Second, "a new client is served", func() bool {
		resp, err := http.Get(g.httpURL() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	t.Logf("%d of 200 idle connections left open", open)
}

// A client that leaves before its answer (a timeout of its own) has its
// statement canceled in the backend, and that is not logged as a server
// error: before, each such request was an "HTTP request failed" error
// line with a request id, as if something had failed in pgwarden.
func TestAClientThatLeavesHasItsStatementCanceledQuietly(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	for _, body := range []string{`{"stmt":"SELECT pg_sleep(30), 'left-one'"}`, `{"transaction":[{"stmt":"SELECT pg_sleep(30), 'left-tx'"}]}`} {
		req, _ := http.NewRequest("POST", g.httpURL()+"/_sql?db=postgres", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("alice", "alice-Pass-1")
		client := &http.Client{Timeout: 700 * time.Millisecond}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("%s: answered %d within the client's timeout", body, resp.StatusCode)
		}
	}
	waitFor(t, 5*time.Second, "the statements of the clients that left are canceled", func() bool {
		var n int
		if err := queryPostgres(t, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30), ''left-%' AND state = 'active' AND pid <> pg_backend_pid()", &n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	g.waitLog("the client left before its answer", 2)
	if strings.Contains(g.log.String(), "an HTTP request failed") {
		t.Fatal("a client that left was logged as a failed request")
	}
}
