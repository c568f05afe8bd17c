package httpfront

import (
	"bytes"
	"database/sql/driver"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// rawArgs are a request's arguments as the client wrote them: an object
// stays its own text (key order, duplicate keys, every digit), which
// decoding into a map would lose before a json parameter stores it.
type rawArgs []json.RawMessage

// jsonArgs turns the JSON arguments into values pgx can send. Numbers and
// booleans go as their JSON text, which PostgreSQL reads with the
// parameter type's own input (so 5 fills an int4, a numeric, a text or a
// date parameter, exactly, as psql's parameters do); strings as their text
// (base64 for bytea, see argString); objects as their JSON text; arrays as
// arrays of such values.
func jsonArgs(args rawArgs) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := jsonArg(a, 0).(type) {
		case argLiteral:
			// A plain string, which pgx sends as text whatever the
			// parameter's type, planning nothing else first.
			out[i] = string(v)
		default:
			out[i] = v
		}
	}
	return out
}

// maxArgArrayDepth is how deep arrays in an argument are taken apart:
// PostgreSQL's arrays have at most 6 dimensions (MAXDIM). A deeper array
// goes as its JSON text, which a json or jsonb parameter stores as it is.
// Each level is parsed again, so without the bound a 20 KB body of 10,000
// nested brackets cost 1.6 s of CPU.
const maxArgArrayDepth = 6

// jsonArg converts one argument found depth arrays deep; the request's
// decoding already checked it is valid JSON.
func jsonArg(raw []byte, depth int) any {
	raw = bytes.Trim(raw, " \t\r\n")
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '{':
		return argObject(raw)
	case '[':
		if depth >= maxArgArrayDepth {
			return argObject(raw)
		}
		elems := arrayElements(raw)
		out := make([]any, len(elems))
		for i, e := range elems {
			out[i] = jsonArg(e, depth+1)
		}
		if md, ok := multiDim(out); ok {
			return md
		}
		return out
	}
	switch raw[0] {
	case '"':
		if bytes.IndexByte(raw, '\\') < 0 {
			return argString(raw[1 : len(raw)-1])
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil
		}
		return argString(s)
	case 'n':
		return nil
	}
	return argLiteral(raw) // a number, true or false
}

// arrayElements cuts a valid JSON array into its elements, without
// copying: one pass over the bytes, which only has to follow strings and
// nesting because the request's decoding already checked the syntax.
func arrayElements(raw []byte) [][]byte {
	var elems [][]byte
	depth, start, inString := 0, 1, false
	for i := 1; i < len(raw)-1; i++ {
		c := raw[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 0 {
				elems = append(elems, raw[start:i])
				start = i + 1
			}
		}
	}
	if last := bytes.TrimSpace(raw[start : len(raw)-1]); len(last) > 0 || len(elems) > 0 {
		elems = append(elems, raw[start:len(raw)-1])
	}
	return elems
}

// argArray is a JSON array of arrays all of one shape: a
// multi-dimensional PostgreSQL array, as /_sql answers one
// ('{{1,2},{3,4}}' is [[1,2],[3,4]]), where pgx would take a nested []any
// as one dimension of values and fail; where pgx marshals it as JSON (a
// json or jsonb parameter), the nested arrays it was.
type argArray struct {
	pgtype.Array[any]
	nested []any
}

// MarshalJSON implements json.Marshaler.
func (a argArray) MarshalJSON() ([]byte, error) { return json.Marshal(a.nested) }

// multiDim makes elems an argArray when each is an array of the same shape
// (non-empty, holding no arrays at the innermost level).
func multiDim(elems []any) (argArray, bool) {
	var inner []pgtype.ArrayDimension
	var flat []any
	for i, e := range elems {
		var dims []pgtype.ArrayDimension
		var vals []any
		switch v := e.(type) {
		case []any:
			for _, x := range v {
				switch x.(type) {
				case []any, argArray:
					return argArray{}, false
				}
			}
			dims, vals = []pgtype.ArrayDimension{{Length: int32(len(v)), LowerBound: 1}}, v
		case argArray:
			dims, vals = v.Dims, v.Elements
		default:
			return argArray{}, false
		}
		if len(vals) == 0 || (i > 0 && !slices.Equal(dims, inner)) {
			return argArray{}, false
		}
		inner = dims
		flat = append(flat, vals...)
	}
	if len(elems) == 0 {
		return argArray{}, false
	}
	dims := append([]pgtype.ArrayDimension{{Length: int32(len(elems)), LowerBound: 1}}, inner...)
	return argArray{Array: pgtype.Array[any]{Elements: flat, Dims: dims, Valid: true}, nested: elems}, true
}

// sendArraysAsText lets an array argument fill a parameter whose type pgx
// does not know (an enum's or a domain's array, an extension's type such as
// citext[], a composite's array): it goes as PostgreSQL's array text, for
// the type's own input to read ('{"ok","sad"}'), where pgx refused it ("cannot
// find encode plan") and the client had to write that text itself. The
// wrapper comes last, so every type pgx can send an array to (int4[],
// jsonb[], a json parameter taking it as JSON) is sent as before.
func sendArraysAsText(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append(m.TryWrapEncodePlanFuncs, func(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
		switch value.(type) {
		case []any, argArray:
			return &arrayTextPlan{}, "", true
		}
		return nil, nil, false
	})
}

// arrayTextPlan sends an array argument as PostgreSQL's array text.
type arrayTextPlan struct{ next pgtype.EncodePlan }

func (p *arrayTextPlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *arrayTextPlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(string(appendArrayText(nil, value)), buf)
}

// appendArrayText writes v as an element of PostgreSQL's array text: an
// array in braces, NULL bare, anything else in double quotes (which every
// element type's input takes, a composite's "(1,x)" included).
func appendArrayText(b []byte, v any) []byte {
	var s string
	switch x := v.(type) {
	case nil:
		return append(b, "NULL"...)
	case argArray:
		return appendArrayText(b, x.nested)
	case []any:
		b = append(b, '{')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendArrayText(b, e)
		}
		return append(b, '}')
	case argLiteral:
		s = string(x)
	case argString:
		s = string(x)
	case argObject:
		s = string(x)
	default:
		s = fmt.Sprint(x)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// argLiteral is a JSON number, true or false, as the request wrote it:
// sent as that text, which PostgreSQL parses exactly with the parameter
// type's input function, and written as the literal it is where pgx
// marshals the argument as JSON (an array for a json or jsonb parameter).
// Before December 2026 an integer went as a binary int8, which pgx could
// not send to a text, date or interval parameter ("cannot find encode
// plan"), and a fraction inside such an array became a string.
type argLiteral string

// MarshalJSON implements json.Marshaler.
func (l argLiteral) MarshalJSON() ([]byte, error) { return []byte(l), nil }

// argObject is a JSON object argument (or an array deeper than
// maxArgArrayDepth), as its JSON text: sent as that text
// to a json, jsonb or text parameter, and kept an object inside an array
// marshalled for a json or jsonb parameter. Before, such an object became
// a JSON string there: [{"id": 1}] was stored as ["{\"id\":1}"].
type argObject string

// MarshalJSON implements json.Marshaler.
func (o argObject) MarshalJSON() ([]byte, error) { return []byte(o), nil }

// argString is a JSON string argument. For every parameter type but bytea
// pgx sends it as the text it is (its underlying string), for PostgreSQL to
// parse; a bytea parameter takes its bytes from BytesValue, which reads
// base64, the form bytea values come back in, so that a value read can be
// written back unchanged. PostgreSQL's hex form (\x...) is read too;
// before, every string went to bytea as PostgreSQL's text input, so a
// base64 value read and written back was stored as its base64 text.
type argString string

// BytesValue implements pgtype.BytesValuer, which only pgx's bytea codec
// asks for.
func (s argString) BytesValue() ([]byte, error) {
	if rest, ok := strings.CutPrefix(string(s), `\x`); ok {
		b, err := hex.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("a bytea argument in hex form (\\x...) holds a non-hex digit: %v", err)
		}
		return b, nil
	}
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(string(s))
	if err != nil {
		return nil, fmt.Errorf("a bytea argument is base64, as bytea values come back, or PostgreSQL's hex form \\x...: %v", err)
	}
	return b, nil
}

// encodeValue renders a decoded column value as SPEC section 6 wants it:
// exact numbers, RFC 3339 times, json embedded, arrays as arrays, bytea as
// base64 (encoding/json does that for []byte), everything else as text.
func encodeValue(v any) any {
	switch x := v.(type) {
	case nil, bool, string, int8, int16, int32, int64, int, uint8, uint16, uint32, uint64, []byte:
		return x
	case float32:
		// Kept a float32, so it prints with float32's shortest digits
		// (0.1, as PostgreSQL prints a real), not float64's
		// 0.10000000149011612.
		if f, ok := encodeFloat(float64(x)).(string); ok {
			return f
		}
		return x
	case float64:
		return encodeFloat(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case pgtype.Numeric:
		if !x.Valid {
			return nil
		}
		if x.NaN || x.InfinityModifier != pgtype.Finite {
			b, _ := x.MarshalJSON()
			var s string
			json.Unmarshal(b, &s)
			return s
		}
		return json.RawMessage(numericText(x))
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case map[string]any:
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = encodeValue(e)
		}
		return out
	case netip.Prefix:
		return x.String()
	case netip.Addr:
		return x.String()
	case pgtype.Interval:
		if v, err := x.Value(); err == nil {
			return v
		}
	case driver.Valuer:
		if dv, err := x.Value(); err == nil {
			return encodeValue(dv)
		}
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// encodeFloat gives the values JSON has no number for as PostgreSQL
// spells them.
func encodeFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

// resultFormats asks the backend for the types encodeValue renders in the
// SPEC's JSON forms in binary, which pgx decodes: numbers, booleans,
// strings, timestamps, bytea, uuid and arrays of them. json and jsonb come
// as text, embedded as PostgreSQL wrote them (jsonText): decoded by pgx
// they became Go floats and maps, which turned 9007199254740993 into
// 9007199254740992, reordered a json object's keys, and failed on 1e400. Every other
// type (not in the map, so 0) comes as PostgreSQL's own text form, which
// is what the SPEC wants for "anything else": a date as 2024-01-01, a
// range as [1,5), xml as its text, an interval as 1 day, never a Go
// rendering of pgx's decoded value.
var resultFormats = func() pgx.QueryResultFormatsByOID {
	m := pgx.QueryResultFormatsByOID{}
	for _, oid := range []uint32{
		pgtype.BoolOID, pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
		pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID,
		pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID,
		pgtype.ByteaOID,
		pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.UUIDOID,
		pgtype.BoolArrayOID, pgtype.Int2ArrayOID, pgtype.Int4ArrayOID, pgtype.Int8ArrayOID, pgtype.OIDArrayOID,
		pgtype.Float4ArrayOID, pgtype.Float8ArrayOID, pgtype.NumericArrayOID,
		pgtype.TextArrayOID, pgtype.VarcharArrayOID, pgtype.BPCharArrayOID, pgtype.NameArrayOID,
		pgtype.ByteaArrayOID,
		pgtype.TimestampArrayOID, pgtype.TimestamptzArrayOID, pgtype.UUIDArrayOID,
	} {
		m[oid] = pgtype.BinaryFormatCode
	}
	return m
}()

// boxArrayOID is box[], the one built-in array whose elements are
// separated by ';' (a box's own text holds commas): it stays one string.
const boxArrayOID = 1020

// textValue renders a non-NULL column that came in text form: the text
// itself, or for an array of such a type, an array (nested by dimension)
// of its elements' text forms.
func textValue(tm *pgtype.Map, oid uint32, raw []byte) any {
	if oid == pgtype.JSONOID || oid == pgtype.JSONBOID {
		return jsonText(raw)
	}
	if oid != boxArrayOID && (isArrayType(tm, oid) || strings.HasPrefix(builtinTypeNames[oid], "_")) {
		// Any array's text form parses as text[]'s: elements are their
		// own text forms.
		var a pgtype.Array[*string]
		if err := tm.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, raw, &a); err == nil && a.Valid {
			embed := oid == pgtype.JSONArrayOID || oid == pgtype.JSONBArrayOID
			elems := make([]any, len(a.Elements))
			for i, e := range a.Elements {
				switch {
				case e == nil:
				case embed:
					elems[i] = jsonText(*e)
				default:
					elems[i] = *e
				}
			}
			return nestArray(elems, a.Dims)
		}
	}
	return string(raw)
}

// binaryValue decodes a column that came in binary (one of the types
// resultFormats names, so pgx's map knows it) and encodes it. An array of
// several dimensions is nested: pgx's default decoding flattens it.
func binaryValue(tm *pgtype.Map, oid uint32, raw []byte) (any, error) {
	t, ok := tm.TypeForOID(oid)
	if !ok {
		return append([]byte(nil), raw...), nil // base64, as pgx gives unknown binary
	}
	if _, isArray := t.Codec.(*pgtype.ArrayCodec); isArray && multiDimensional(raw) {
		var a pgtype.Array[any]
		if err := tm.Scan(oid, pgtype.BinaryFormatCode, raw, &a); err != nil {
			return nil, err
		}
		elems := make([]any, len(a.Elements))
		for i, e := range a.Elements {
			elems[i] = encodeValue(e)
		}
		return nestArray(elems, a.Dims), nil
	}
	v, err := t.Codec.DecodeValue(tm, oid, pgtype.BinaryFormatCode, raw)
	if err != nil {
		return nil, err
	}
	return encodeValue(v), nil
}

// multiDimensional says whether a binary array value has more than one
// dimension (its first word is the number of dimensions).
func multiDimensional(raw []byte) bool {
	return len(raw) >= 4 && binary.BigEndian.Uint32(raw) > 1
}

func isArrayType(tm *pgtype.Map, oid uint32) bool {
	t, ok := tm.TypeForOID(oid)
	if !ok {
		return false
	}
	_, isArray := t.Codec.(*pgtype.ArrayCodec)
	return isArray
}

// nestArray shapes a flat list of elements into the array's dimensions.
func nestArray(elems []any, dims []pgtype.ArrayDimension) []any {
	if len(dims) <= 1 {
		return elems
	}
	n := max(int(dims[0].Length), 1)
	per := len(elems) / n
	out := make([]any, n)
	for i := range out {
		out[i] = nestArray(elems[i*per:(i+1)*per], dims[1:])
	}
	return out
}

// numericText prints a finite numeric exactly: digits * 10^exp.
func numericText(n pgtype.Numeric) string {
	s := new(big.Int).Set(n.Int).String()
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	switch {
	case n.Exp > 0:
		for i := int32(0); i < n.Exp; i++ {
			s += "0"
		}
	case n.Exp < 0:
		e := int(-n.Exp)
		for len(s) <= e {
			s = "0" + s
		}
		s = s[:len(s)-e] + "." + s[len(s)-e:]
	}
	if neg {
		s = "-" + s
	}
	return s
}
