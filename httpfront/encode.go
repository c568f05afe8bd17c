package httpfront

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// jsonArgs turns decoded JSON arguments into values pgx can send: exact
// numbers stay exact (integers as int64, others as their text, which
// PostgreSQL parses into numeric or float), objects become JSON text.
func jsonArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = jsonArg(a)
	}
	return out
}

func jsonArg(a any) any {
	switch v := a.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		return string(v)
	case map[string]any:
		b, _ := json.Marshal(v)
		return string(b)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonArg(e)
		}
		return out
	}
	return a
}

// encodeValue renders a decoded column value as SPEC section 6 wants it:
// exact numbers, RFC 3339 times, json embedded, arrays as arrays, bytea as
// base64 (encoding/json does that for []byte), everything else as text.
func encodeValue(v any) any {
	switch x := v.(type) {
	case nil, bool, string, int8, int16, int32, int64, int, uint8, uint16, uint32, uint64, []byte:
		return x
	case float32:
		return encodeFloat(float64(x))
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

func encodeFloat(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f)
	}
	return f
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
