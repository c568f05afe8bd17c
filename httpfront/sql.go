package httpfront

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/internal/membudget"
	"github.com/pgwarden/pgwarden/snapshot"
)

// sqlRequest is the body of POST /_sql (CrateDB's shape).
type sqlRequest struct {
	Stmt        string             `json:"stmt"`
	Args        rawArgs            `json:"args"`
	BulkArgs    []rawArgs          `json:"bulk_args"`
	Transaction []txStatement      `json:"transaction"`
	Credentials *inlineCredentials `json:"credentials"`
}

type txStatement struct {
	Stmt string  `json:"stmt"`
	Args rawArgs `json:"args"`
}

type inlineCredentials struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// result is one statement's answer.
type result struct {
	Cols     []string `json:"cols"`
	ColTypes []string `json:"col_types"`
	Rows     rowsJSON `json:"rows"`
	RowCount int64    `json:"rowcount"`
	Duration float64  `json:"duration"`
}

// rowsJSON is a result's rows, encoded as one JSON array while they were
// read (see appendJSON).
type rowsJSON []byte

// MarshalJSON gives the rows as they were encoded.
func (r rowsJSON) MarshalJSON() ([]byte, error) { return r, nil }

// sqlError is an error to answer with its status, SQLSTATE and statement.
type sqlError struct {
	status    int
	code, msg string
}

func (e *sqlError) Error() string { return e.msg }

// decodeBody reads a JSON body within max_body_bytes: 413 over it, 415 for
// anything that is not JSON, compressed JSON included.
//
// room, when set, is asked for the bytes the body will hold in all, read
// and decoded; roomAtMost is the most it could ever give.
func decodeBody(w http.ResponseWriter, r *http.Request, max int64, v any, room func(int64) bool, roomAtMost int64) *sqlError {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			// Also refuses the text/plain and form posts a cross-site
			// page can send without a preflight.
			return &sqlError{status: http.StatusUnsupportedMediaType, code: codeProtocolViolation, msg: "the body must be application/json"}
		}
	} else {
		return &sqlError{status: http.StatusUnsupportedMediaType, code: codeProtocolViolation, msg: "the body must be application/json"}
	}
	if c := bodyCoding(r); c != "" {
		w.Header().Set("Accept-Encoding", "identity")
		return &sqlError{status: http.StatusUnsupportedMediaType, code: codeProtocolViolation, msg: fmt.Sprintf(
			"the body is sent with Content-Encoding %q; pgwarden reads bodies as they are (identity)", c)}
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, max), r.ContentLength, max, room)
	if err != nil {
		if errors.Is(err, membudget.ErrExhausted) {
			return errBodyMemory
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &sqlError{status: http.StatusRequestEntityTooLarge, code: codeProgramLimit, msg: fmt.Sprintf("the body is over http.max_body_bytes (%d)", max)}
		}
		if r.Context().Err() != nil {
			// Ended while its body came: closed to make room for
			// another source's client at max_connections (see limit),
			// or its client left.
			return &sqlError{status: http.StatusServiceUnavailable, code: codeTooManyConnections, msg: "too many connections: the request was closed while its body was still being sent, to make room for other clients"}
		}
		return &sqlError{status: http.StatusBadRequest, code: codeProtocolViolation, msg: "could not read the body"}
	}
	if !utf8.Valid(body) {
		return &sqlError{status: http.StatusBadRequest, code: codeCharacterNotInRepertoire, msg: "the body is not valid UTF-8"}
	}
	if room != nil {
		// Decoded, a body takes far more than its bytes when it holds
		// many values: 1 MiB of arguments "0,0,..." is 17 MB once
		// decoded and 34 MB once converted for pgx. Room for that is
		// taken before decoding, while the body is still all there is.
		if need := decodedBytes(body); need > freeBodyBytes && !room(need) {
			if need > roomAtMost {
				return &sqlError{status: http.StatusRequestEntityTooLarge, code: codeProgramLimit, msg: fmt.Sprintf(
					"the body holds about %d JSON values, which would take %d bytes decoded, more than the eighth of http.max_request_memory (%d bytes) a body of one client may take before its credentials are proved: send fewer values per request, or raise http.max_request_memory",
					countJSONValues(body), need, roomAtMost)}
			}
			return errBodyMemory
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &sqlError{status: http.StatusBadRequest, code: codeProtocolViolation, msg: "the body is not valid JSON for " + r.URL.Path + ": " + err.Error()}
	}
	if dec.More() {
		return &sqlError{status: http.StatusBadRequest, code: codeProtocolViolation, msg: "the body holds more than one JSON value"}
	}
	if esc, ok := loneSurrogate(body); ok {
		return &sqlError{status: http.StatusBadRequest, code: codeCharacterNotInRepertoire, msg: fmt.Sprintf(
			"the body holds %s, half of a UTF-16 surrogate pair without the other half: it stands for no character", esc)}
	}
	if err := checkBodyKeys(body); err != nil {
		return &sqlError{status: http.StatusBadRequest, code: codeProtocolViolation, msg: "the body is ambiguous: " + err.Error()}
	}
	return nil
}

func (s *Server) handleSQL(w http.ResponseWriter, r *http.Request) {
	snap := s.o.State.Current()
	cfg := snap.Config
	// What the request holds, its body first and then its answer, is
	// taken from http.max_request_memory as it grows, and given back
	// once the answer went out. A body read before its credentials are
	// proved may also take at most a quarter of it (bodies), so that
	// clients that prove nothing cannot take the answers' room; and the
	// requests of one source at most half of either, so that one client
	// cannot take every other's.
	s.pools.Memory.SetCapacity(cfg.HTTP.RequestMemory())
	s.bodies.SetCapacity(cfg.HTTP.RequestMemory() / 4)
	src := sourceOf(r)
	mem := s.pools.Memory.NewLeaseFor(src)
	defer mem.Return()
	bodyMem := s.bodies.NewLeaseFor(src)
	defer bodyMem.Return()
	var req sqlRequest
	if e := decodeBody(w, r, cfg.HTTP.MaxBodyBytes, &req, func(n int64) bool { return bodyMem.GrowTo(n) && mem.GrowTo(n) }, s.bodies.Capacity()/2); e != nil {
		if e == errBodyMemory {
			s.writeSQLError(w, r, errBodyNoRoom)
			return
		}
		writeError(w, e.status, e.code, e.msg)
		return
	}
	creds, f := readCredentials(r, snap, req.Credentials)
	if f == nil {
		f = s.sessionCredentials(r, snap, creds)
	}
	if f != nil {
		s.fail(w, snap, f)
		return
	}
	db, e := queryDatabase(r)
	if e != nil {
		writeError(w, e.status, e.code, e.msg)
		return
	}
	res, f := s.authenticate(r, snap, creds, db)
	if f != nil {
		s.fail(w, snap, f)
		return
	}
	bodyMem.Return() // proved: its body stays counted in mem alone
	if n := argValues(&req); n > 0 && !mem.GrowTo(mem.Held()+bytesPerConvertedValue*n) {
		// The arguments, converted for pgx, take as much again.
		s.writeSQLError(w, r, errArgsNoRoom)
		return
	}
	shapes := 0
	for _, set := range []bool{req.Stmt != "", req.Transaction != nil} {
		if set {
			shapes++
		}
	}
	if shapes != 1 || (req.BulkArgs != nil && (req.Stmt == "" || req.Args != nil)) {
		writeError(w, http.StatusBadRequest, codeProtocolViolation, `give exactly one of "stmt" (with "args" or "bulk_args") or "transaction"`)
		return
	}
	if db == "" {
		db = defaultDatabase(cfg, res.name)
	}
	t, err := backend.Route(cfg, res.name, res.user, backend.Credentials{Password: res.password}, db)
	var refused backend.RouteRefusal
	if errors.As(err, &refused) {
		// As the wire records it: the client was proven, the backend
		// login is refused.
		ev := *res.event
		ev.Result, ev.Reason = authcore.ResultBackend, backend.RefusalReason(err)
		ev.Log(s.o.Audit)
		writeJSON(w, http.StatusBadRequest, apiError{Error: errorBody{Code: refused.SQLState(), Message: refused.Error(), Detail: refused.ClientDetail()}})
		return
	}
	pool, err := s.pools.Get(cfg, t)
	if err != nil {
		s.internalError(w, r, "backend configuration failed for an HTTP request", err)
		return
	}
	if names := backend.DatabasesNamedByDDL(req.Stmt); names != nil {
		// DROP, ALTER or CREATE DATABASE: PostgreSQL refuses while other
		// sessions are connected, and idle pooled ones count.
		s.o.Log.Debug("closing idle backends of databases a statement names", zap.String("user", res.name), zap.Strings("names", names))
		s.o.ReleaseDatabases(t.Host, t.Port, names)
	}
	ctx := backend.WithMemorySource(r.Context(), src)
	if d := cfg.HTTP.StatementTimeout.Duration; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var out any
	for retried := false; ; retried = true {
		switch {
		case req.Transaction != nil:
			out, err = s.runTransaction(ctx, snap, pool, res.name, req.Transaction, mem)
		case req.BulkArgs != nil:
			out, err = s.runBulk(ctx, pool, res.name, req.Stmt, req.BulkArgs)
		default:
			var answered bool
			if answered, err = s.runOne(ctx, w, snap, pool, res.name, req.Stmt, req.Args, mem); answered {
				return
			}
		}
		if retried || !errors.Is(err, backend.ErrPoolClosed) {
			break
		}
		// Closed between Get and Acquire, before anything ran: once more
		// on the pool Get gives now.
		if pool, err = s.pools.Get(cfg, t); err != nil {
			break
		}
	}
	if err != nil && ctx.Err() != nil {
		err = canceledFor(ctx, err)
	}
	if err != nil {
		var ce *pgconn.ConnectError
		var pe *pgconn.PgError
		if errors.As(err, &ce) && errors.As(err, &pe) {
			// The backend refused pgwarden's login: the client was
			// proven, so the audit records the backend's refusal.
			ev := *res.event
			ev.Result, ev.Reason = authcore.ResultBackend, "backend refused the session: "+pe.Message
			ev.Log(s.o.Audit)
			if rf := backend.LoginRefusal(pe, t.Role); rf != nil {
				writeJSON(w, http.StatusBadGateway, apiError{Error: errorBody{Code: rf.Code, Message: rf.Message, Detail: rf.Detail, Hint: rf.Hint}})
				return
			}
		}
		s.writeSQLError(w, r, err)
		return
	}
	if tx, ok := out.(*txResults); ok {
		writeResults(w, http.StatusOK, nil, tx.Results)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// runOne runs one statement and answers it once its backend is back in
// the pool (answered reports whether the reply went out); the backend's
// reset travels behind the statement.
func (s *Server) runOne(ctx context.Context, w http.ResponseWriter, snap *snapshot.Snapshot, pool *pgxpool.Pool, user, stmt string, args rawArgs, mem *membudget.Lease) (answered bool, err error) {
	if stmt == "" {
		return false, errEmptyStatement
	}
	if e := refusedBeforeRunning(stmt, false); e != nil {
		return false, e
	}
	var res *result
	start := time.Now()
	err = s.pools.QueryThenReset(ctx, pool, user, stmt, jsonArgs(args), resultFormats, func(rows pgx.Rows, tm *pgtype.Map) (err error) {
		res, err = readResult(rows, tm, resultLimits(snap, mem), start)
		return err
	})
	if err != nil {
		return false, err
	}
	writeResults(w, http.StatusOK, res, nil)
	return true, nil
}

type bulkResults struct {
	Results []bulkResult `json:"results"`
}

type bulkResult struct {
	RowCount int64 `json:"rowcount"`
}

// runBulk runs one statement per argument list in one transaction: either
// every row lands or none does.
func (s *Server) runBulk(ctx context.Context, pool *pgxpool.Pool, user, stmt string, sets []rawArgs) (*bulkResults, error) {
	// An empty list answers {"results": []}, not null.
	out := &bulkResults{Results: make([]bulkResult, 0, len(sets))}
	if e := refusedBeforeRunning(stmt, true); e != nil {
		return nil, e
	}
	c, err := s.pools.Acquire(ctx, pool, user)
	if err != nil {
		return nil, err
	}
	defer s.pools.ReleaseAfter(c, stmt)
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		for i, args := range sets {
			// Query, not Exec: pgx's Exec sends a statement with no
			// arguments by the simple protocol, which runs every
			// statement of the text, so "INSERT ...; COMMIT; BEGIN" with
			// an empty argument list committed the rows before it and
			// left the request's rollback only what came after. Query
			// keeps to the extended protocol, which takes one statement
			// (42601 for more), as a single statement's request does,
			// and says "expected 1 arguments, got 0" as it does.
			rows, err := tx.Query(ctx, stmt, jsonArgs(args)...)
			if err == nil {
				rows.Close()
				err = rows.Err()
			}
			if err != nil {
				return withStatement(err, i)
			}
			if err := stillInTransaction(tx); err != nil {
				return withStatement(err, i)
			}
			out.Results = append(out.Results, bulkResult{rows.CommandTag().RowsAffected()})
		}
		return nil
	})
	return out, err
}

type txResults struct {
	Results []*result `json:"results"`
}

// runTransaction runs every statement in one backend transaction; any
// error rolls all back and names the statement (0-based) that failed.
func (s *Server) runTransaction(ctx context.Context, snap *snapshot.Snapshot, pool *pgxpool.Pool, user string, stmts []txStatement, mem *membudget.Lease) (*txResults, error) {
	out := &txResults{}
	for i, st := range stmts {
		if e := refusedBeforeRunning(st.Stmt, true); e != nil {
			return nil, withStatement(e, i)
		}
	}
	c, err := s.pools.Acquire(ctx, pool, user)
	if err != nil {
		return nil, err
	}
	texts := make([]string, len(stmts))
	for i, st := range stmts {
		texts[i] = st.Stmt
	}
	defer s.pools.ReleaseAfter(c, texts...)
	lim := resultLimits(snap, mem)
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		for i, st := range stmts {
			res, err := query(ctx, tx.Conn(), st.Stmt, st.Args, lim)
			if err != nil {
				return withStatement(err, i)
			}
			if err := stillInTransaction(tx); err != nil {
				return withStatement(err, i)
			}
			out.Results = append(out.Results, res)
			lim.bytes -= int64(len(res.Rows) - len("[]"))
		}
		return nil
	})
	return out, err
}

// stillInTransaction checks, after each statement of a transaction
// request, that the backend still reports an open, healthy transaction
// block: anything else (a statement that left it, however it did) ends the
// request with everything rolled back. So does a changed client_encoding:
// the next statements' text and arguments, UTF-8 from the JSON body, would
// be read in the new encoding and stored changed ('é' as 'Ã©' under
// LATIN1), and their values sent back in it.
func stillInTransaction(tx pgx.Tx) error {
	pc := tx.Conn().PgConn()
	if st := pc.TxStatus(); st != 'T' {
		return txEnded("the statement")
	}
	if enc := pc.ParameterStatus("client_encoding"); enc != "UTF8" {
		return &sqlError{status: http.StatusBadRequest, code: codeFeatureNotSupported,
			msg: fmt.Sprintf("client_encoding cannot be changed over HTTP (the statement set it to %s): requests and answers are UTF-8 JSON, and the statements after it would be read in another encoding; all statements were rolled back", strings.ToValidUTF8(enc, "?"))}
	}
	return nil
}

type statementError struct {
	err   error
	index int
}

func (e *statementError) Error() string { return e.err.Error() }
func (e *statementError) Unwrap() error { return e.err }

func withStatement(err error, i int) error { return &statementError{err: err, index: i} }

var errEmptyStatement = &sqlError{status: http.StatusBadRequest, code: codeSyntaxError, msg: "empty statement"}

// limits bound what one request reads from the backend: http.max_rows rows
// and http.max_result_bytes bytes of values.
// A transaction's statements share one answer, so bytes is what is left
// of max for the statement at hand. mem is the request's share of
// http.max_request_memory, which the answer's JSON takes as it grows.
type limits struct {
	rows       int
	bytes, max int64
	mem        *membudget.Lease
}

func resultLimits(snap *snapshot.Snapshot, mem *membudget.Lease) limits {
	return limits{rows: snap.Config.HTTP.MaxRows, bytes: snap.Config.HTTP.MaxResultBytes, max: snap.Config.HTTP.MaxResultBytes, mem: mem}
}

// freeAnswerBytes is what an answer may hold before it takes any of
// http.max_request_memory: most answers never reach it, and their rows
// then cost no look at the shared count.
const freeAnswerBytes = 64 << 10

// errResultMemory is the refusal of an answer that found no room in
// http.max_request_memory.
var errResultMemory = fmt.Errorf("the answer: %w", membudget.ErrExhausted)

// errBodyNoRoom is the refusal of a body that found no room in
// http.max_request_memory, and errBodyMemory the way decodeBody says so.
var (
	errBodyNoRoom = fmt.Errorf("the body: %w", membudget.ErrExhausted)
	errBodyMemory = &sqlError{status: http.StatusServiceUnavailable, code: codeOutOfMemory, msg: errBodyNoRoom.Error()}
)

// errArgsNoRoom is the refusal of arguments whose conversion found no
// room in http.max_request_memory.
var errArgsNoRoom = fmt.Errorf("the arguments: %w", membudget.ErrExhausted)

// argValues bounds from above the JSON values of a request's arguments,
// or 0 when they are too few to count.
func argValues(req *sqlRequest) int64 {
	var n int
	count := func(args rawArgs) {
		for _, a := range args {
			n += countJSONValues(a)
		}
	}
	count(req.Args)
	for _, args := range req.BulkArgs {
		count(args)
	}
	for _, st := range req.Transaction {
		count(st.Args)
	}
	if n*bytesPerConvertedValue <= freeBodyBytes {
		return 0
	}
	return int64(n)
}

// freeBodyBytes is what a body may hold before it takes room in
// http.max_request_memory.
const freeBodyBytes = 64 << 10

// bytesPerDecodedValue is what one JSON value of a body costs once
// decoded, and bytesPerConvertedValue what converting it into an argument
// for pgx adds (measured December 2026 on the worst shapes, flat and
// nested argument arrays and bulk_args rows: about 33 bytes per value
// live once decoded, twice that while decoding, and 65 to 80 once
// converted: slice and interface headers and a small allocation each).
const (
	bytesPerDecodedValue   = 48
	bytesPerConvertedValue = 48
)

// decodedBytes is the room a body needs decoded: three times its bytes
// (the body, the decoder's copy, the strings taken from it) and
// bytesPerDecodedValue for each value it may hold.
func decodedBytes(body []byte) int64 {
	return 3*int64(len(body)) + bytesPerDecodedValue*int64(countJSONValues(body))
}

// countJSONValues bounds the number of values in a JSON text from above
// without decoding it: every value but the first follows a '[', ',' or
// ':' outside a string, and every container opens with '[' or '{'.
func countJSONValues(b []byte) int {
	n := 1
	in := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if in {
			switch c {
			case '\\':
				i++
			case '"':
				in = false
			}
			continue
		}
		switch c {
		case '"':
			in = true
		case '[', '{', ',', ':':
			n++
		}
	}
	return n
}

// readBody reads a body of at most max bytes into one buffer (sized by its
// Content-Length when it gives one). room, when set, is asked for twice
// the buffer's size (the buffer, and the copy the JSON decoder makes of
// it) before the buffer grows past freeBodyBytes; with no room the rest
// of the body is left unread and the error wraps membudget.ErrExhausted.
func readBody(r io.Reader, contentLength, max int64, room func(int64) bool) ([]byte, error) {
	size := int64(512)
	if contentLength > 0 {
		// One more byte, so that the read that finds the end needs no
		// room of its own; more than max is MaxBytesReader's to refuse.
		size = min(contentLength, max) + 1
	}
	if size > freeBodyBytes && room != nil && !room(2*size) {
		return nil, errBodyNoRoom
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			grown := int64(2 * cap(buf))
			if grown > freeBodyBytes && room != nil && !room(2*grown) {
				return nil, errBodyNoRoom
			}
			// Exactly that much (append would round it up past what
			// room was asked for).
			nb := make([]byte, len(buf), grown)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// resultTooLarge is the refusal of a result over http.max_result_bytes.
func resultTooLarge(max int64) *sqlError {
	return &sqlError{status: http.StatusBadRequest, code: codeProgramLimit,
		msg: fmt.Sprintf("the result is larger than http.max_result_bytes (%d bytes)", max)}
}

// queryDatabase is the URL's db parameter. A query string that names it
// twice, or that does not parse (url.Values.Get would skip what it cannot
// read and take the first of two), is refused: a proxy that authorizes by
// the last db, or reads a pair Go skipped, would judge another database
// than the one HBA and the backend get.
func queryDatabase(r *http.Request) (string, *sqlError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", &sqlError{status: http.StatusBadRequest, code: codeProtocolViolation, msg: "the query string does not parse: " + err.Error()}
	}
	if len(q["db"]) > 1 {
		return "", &sqlError{status: http.StatusBadRequest, code: codeProtocolViolation, msg: "the query string is ambiguous: it names db more than once"}
	}
	return q.Get("db"), nil
}

// notUTF8 is the refusal of a value that is not UTF-8 (see errNotUTF8),
// in PostgreSQL's words for such bytes, with the way to read them.
func notUTF8(column string, row int) *sqlError {
	return &sqlError{status: http.StatusBadRequest, code: codeCharacterNotInRepertoire,
		msg: fmt.Sprintf("invalid byte sequence for encoding \"UTF8\" in column %q of row %d: a JSON answer cannot carry these bytes unchanged (the database's encoding is SQL_ASCII, or the session changed client_encoding); select convert_to(%s::text, 'SQL_ASCII') to read its bytes as base64",
			strings.ToValidUTF8(column, "\ufffd"), row, pgx.Identifier{strings.ToValidUTF8(column, "\ufffd")}.Sanitize())}
}

// query runs one statement and reads at most the limits' rows and bytes.
func query(ctx context.Context, conn *pgx.Conn, stmt string, args rawArgs, lim limits) (*result, error) {
	if stmt == "" {
		return nil, errEmptyStatement
	}
	start := time.Now()
	rows, err := conn.Query(ctx, stmt, append([]any{resultFormats}, jsonArgs(args)...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return readResult(rows, conn.TypeMap(), lim, start)
}

// readResult reads at most the limits' rows and bytes into a result.
func readResult(rows pgx.Rows, tm *pgtype.Map, lim limits, start time.Time) (*result, error) {
	res := &result{Cols: []string{}, ColTypes: []string{}}
	fds := rows.FieldDescriptions()
	limit := int(min(lim.bytes, math.MaxInt32)) + 1 // the rows' "[" and "]" come free
	buf := append(make([]byte, 0, 64), '[')
	// A transaction's earlier answers keep what they took.
	memBase := lim.mem.Held()
	n := 0
	for _, fd := range fds {
		res.Cols = append(res.Cols, fd.Name)
		name := strconv.FormatUint(uint64(fd.DataTypeOID), 10)
		if t, ok := tm.TypeForOID(fd.DataTypeOID); ok {
			name = t.Name
		} else if n, ok := builtinTypeNames[fd.DataTypeOID]; ok {
			name = n
		}
		res.ColTypes = append(res.ColTypes, name)
	}
	for rows.Next() {
		if n >= lim.rows {
			rows.Close()
			return nil, &sqlError{status: http.StatusBadRequest, code: codeProgramLimit,
				msg: fmt.Sprintf("the result has more than http.max_rows (%d) rows", lim.rows)}
		}
		// Column by column rather than rows.Values: a text-form column is
		// passed on as the backend wrote it, never parsed by pgx (which
		// would refuse a date under DateStyle 'SQL, DMY').
		raw := rows.RawValues()
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '[')
		for i, fd := range fds {
			if i > 0 {
				buf = append(buf, ',')
			}
			// A large value finds room before it is copied out of the
			// message, and again for its JSON once its length is known.
			if len(raw[i]) >= freeAnswerBytes && !lim.mem.GrowTo(memBase+int64(len(buf)+len(raw[i]))) {
				rows.Close()
				return nil, errResultMemory
			}
			var v any
			switch {
			case raw[i] == nil:
			case fd.Format == pgtype.TextFormatCode:
				v = textValue(tm, fd.DataTypeOID, raw[i])
			default:
				var err error
				if v, err = binaryValue(tm, fd.DataTypeOID, raw[i]); err != nil {
					return nil, err
				}
			}
			// Room for a large value is taken before it is written
			// (at least its own length); the answer's growth is
			// counted after each row.
			if vb := valueBytes(v); vb >= freeAnswerBytes && !lim.mem.GrowTo(memBase+int64(len(buf)+vb)) {
				rows.Close()
				return nil, errResultMemory
			}
			var err error
			if buf, err = appendJSON(buf, v, limit); err != nil {
				rows.Close()
				if err == errNotUTF8 {
					return nil, notUTF8(fd.Name, n+1)
				}
				return nil, resultTooLarge(lim.max)
			}
		}
		buf = append(buf, ']')
		n++
		if c := cap(buf); c > freeAnswerBytes && !lim.mem.GrowTo(memBase+int64(c)) {
			rows.Close()
			return nil, errResultMemory
		}
	}
	if len(buf) > limit {
		return nil, resultTooLarge(lim.max)
	}
	res.Rows = append(buf, ']')
	if err := rows.Err(); err != nil {
		return nil, err
	}
	tag := rows.CommandTag()
	res.RowCount = tag.RowsAffected()
	if tag.Select() || (len(res.Cols) > 0 && !tagHasCount(tag.String())) {
		// SHOW, EXPLAIN, VALUES-less utilities that return rows: their
		// tag carries no count, and rowcount is what rows holds.
		res.RowCount = int64(n)
	}
	res.Duration = float64(time.Since(start).Microseconds()) / 1000
	return res, nil
}

// tagHasCount reports whether a command tag ends in a count ("INSERT 0 3",
// "FETCH 5"), where "SHOW" or "CREATE TABLE" does not.
func tagHasCount(tag string) bool {
	i := strings.LastIndexByte(tag, ' ')
	if i < 0 || i == len(tag)-1 {
		return false
	}
	for _, c := range tag[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// canceledFor gives a statement the backend canceled at pgwarden's
// request (ERROR 57014, after http.statement_timeout passed or the client
// left: see backend.cancelOnDone) as that reason, ctx's error, so that it
// is answered as such and not as "canceling statement due to user
// request", which no user asked for.
func canceledFor(ctx context.Context, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != codeQueryCanceled {
		return err
	}
	var se *statementError
	if errors.As(err, &se) {
		return withStatement(ctx.Err(), se.index)
	}
	return ctx.Err()
}

// backendEndedSession says whether a FATAL error of code ended the session
// for the server's reasons (classes 57 operator intervention, 08
// connection exception, 58 system error, XX internal error), not for
// one of the request's own (a transaction_timeout, 25P04, is a limit the
// request ran into: 400 as any other).
func backendEndedSession(code string) bool {
	switch {
	case len(code) < 2:
		return false
	case code[:2] == "57", code[:2] == "08", code[:2] == "58", code[:2] == "XX":
		return true
	}
	return false
}

// writeSQLError answers a failed statement: the backend's SQLSTATE as
// 400; 502 when the backend cannot be reached or ended the session under
// the statement; 503 when it cannot take a session now.
func (s *Server) writeSQLError(w http.ResponseWriter, r *http.Request, err error) {
	var idx *int
	var se *statementError
	if errors.As(err, &se) {
		i := se.index
		idx = &i
	}
	var qe *sqlError
	if errors.As(err, &qe) {
		writeJSON(w, qe.status, apiError{Error: errorBody{Code: qe.code, Message: qe.msg, Statement: idx}})
		return
	}
	if errors.Is(err, membudget.ErrExhausted) {
		// Not the request's fault, nor the backend's: the requests in
		// progress hold what the gateway may give them, and one of them
		// ending makes room.
		capacity := s.pools.Memory.Capacity()
		if n, due := s.memoryRefusals.Add(); due {
			s.o.Log.Warn("HTTP requests refused: the requests in progress hold http.max_request_memory (raise it if these are legitimate answers, giving the process about twice as much memory)",
				zap.Int64("max_request_memory", capacity), zap.Int64("refused", n),
				zap.String("address", addrText(clientAddr(r, s.o.State.Current()))))
		}
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: errorBody{Code: codeOutOfMemory, Statement: idx,
			Message: fmt.Sprintf("out of memory: the HTTP requests in progress hold http.max_request_memory (%d bytes); try again", capacity)}})
		return
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		status := http.StatusBadRequest
		var ce *pgconn.ConnectError
		switch connecting := errors.As(err, &ce); {
		case connecting && (strings.HasPrefix(pe.Code, "53") || pe.Code == "57P03"):
			// The backend cannot take a session now (its connection
			// slots, the role's or database's connection limit, a
			// server starting up or shutting down): a later try may
			// pass, as with pgwarden's own max_backend_connections
			// (503 below), and the request was not at fault.
			status = http.StatusServiceUnavailable
		case !connecting && (pe.Severity == "FATAL" || pe.Severity == "PANIC") && backendEndedSession(pe.Code):
			// The backend ended the session under the statement (a
			// shutdown, pg_terminate_backend, a crash): no fault of the
			// request, as a connection that broke is not (502 below).
			// Its code and words stay.
			status = http.StatusBadGateway
			s.o.Log.Warn("the backend ended its session during an HTTP request", zap.String("path", r.URL.Path),
				zap.String("address", addrText(clientAddr(r, s.o.State.Current()))), zap.String("code", pe.Code), zap.String("message", pe.Message))
		}
		writeJSON(w, status, apiError{Error: errorBody{Code: pe.Code, Message: pe.Message, Statement: idx}})
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away (a timeout of its own, a closed tab): its
		// statement was canceled and nobody reads an answer. That is no
		// server error; before, each one was logged as one, with a
		// request id, as if something had failed here.
		s.o.Log.Debug("the client left before its answer; its statement was canceled",
			zap.String("path", r.URL.Path), zap.String("address", addrText(clientAddr(r, s.o.State.Current()))))
		writeJSON(w, 499, apiError{Error: errorBody{Code: codeQueryCanceled, Message: "canceling statement due to the client leaving", Statement: idx}})
		return
	}
	if errors.Is(err, backend.ErrTooManyBackends) {
		s.o.Log.Warn("backend connection limit reached", zap.String("path", r.URL.Path),
			zap.Int("max_backend_connections", s.o.State.Current().Config.Backend.MaxBackendConnections))
		writeError(w, http.StatusServiceUnavailable, codeTooManyConnections, "too many backend connections")
		return
	}
	// A connect that failed is never the statement's timeout, even when it
	// ran out of time (a backend slow to accept, a login that waited its
	// turn at max_backend_connections): before, it was reported as
	// "canceling statement due to http.statement_timeout".
	var ce *pgconn.ConnectError
	timedOut := errors.Is(err, context.DeadlineExceeded)
	if errors.As(err, &ce) || (!timedOut && pgconn.SafeToRetry(err)) {
		s.o.Log.Warn("backend unreachable for HTTP request", zap.Error(err))
		writeError(w, http.StatusBadGateway, codeConnectionFailure, "could not connect to the backend server")
		return
	}
	if timedOut && pgconn.Timeout(err) {
		// The backend did not answer the cancel within connect_timeout:
		// the statement may have finished, even committed, before the
		// connection was given up, so saying it was canceled could be
		// untrue. PostgreSQL's code for this.
		s.o.Log.Warn("the backend did not answer the cancel of a statement past http.statement_timeout; its outcome is unknown",
			zap.String("path", r.URL.Path), zap.String("address", addrText(clientAddr(r, s.o.State.Current()))))
		writeJSON(w, http.StatusGatewayTimeout, apiError{Error: errorBody{Code: codeResolutionUnknown,
			Message: "the backend did not answer after http.statement_timeout passed and pgwarden asked it to cancel the statement: whether the statement took effect is unknown", Statement: idx}})
		return
	}
	if timedOut {
		writeJSON(w, http.StatusBadRequest, apiError{Error: errorBody{Code: codeQueryCanceled, Message: "canceling statement due to http.statement_timeout", Statement: idx}})
		return
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		s.o.Log.Error("backend connection failed during an HTTP request", zap.Error(err))
		writeError(w, http.StatusBadGateway, codeConnectionFailure, "the backend connection failed")
		return
	}
	// A COPY with the client that copyWithClient did not see: the
	// pipeline closed the connection when PostgreSQL began the copy.
	if msg := err.Error(); strings.Contains(msg, "*pgproto3.CopyInResponse") {
		err = copyRefused("STDIN")
	} else if strings.Contains(msg, "*pgproto3.CopyOutResponse") {
		err = copyRefused("STDOUT")
	}
	var big *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &big) {
		err = resultTooLarge(s.o.State.Current().Config.HTTP.MaxResultBytes)
	}
	if errors.As(err, &qe) {
		writeJSON(w, qe.status, apiError{Error: errorBody{Code: qe.code, Message: qe.msg, Statement: idx}})
		return
	}
	// What is left was refused before reaching the backend: a wrong
	// number of arguments, a value that does not fit its parameter (pgx's
	// words about the client's own arguments). Anything else is internal,
	// and its text stays in the log.
	if msg := err.Error(); strings.Contains(msg, "arguments, got") || strings.Contains(msg, "encode args[") ||
		strings.Contains(msg, "cannot find encode plan") {
		writeJSON(w, http.StatusBadRequest, apiError{Error: errorBody{Code: codeInvalidParameterValue, Message: msg, Statement: idx}})
		return
	}
	s.internalError(w, r, "an HTTP request failed", err)
}

// bodyCoding is the first content coding of a request's body other than
// identity, "" when there is none. pgwarden reads bodies as they are: a
// gzip body used to be read as its compressed bytes and refused as "not
// valid UTF-8", and one whose Content-Encoding was false (br over plain
// JSON) ran. Now either is 415 with Accept-Encoding: identity, as RFC
// 7694 has a server that takes no coding answer.
func bodyCoding(r *http.Request) string {
	for _, v := range r.Header.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return c
			}
		}
	}
	return ""
}
