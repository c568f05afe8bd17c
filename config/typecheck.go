package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

var (
	unmarshalerType     = reflect.TypeOf((*toml.Unmarshaler)(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// checkTypes walks a decoded document against the struct type t and reports
// every value of the wrong type, with what to write instead, removing it
// from doc: the decoder stops at the first mismatch, and a file's other
// problems are still worth reporting in the same run.
func checkTypes(v *validator, doc map[string]any, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fields := tomlFields(t)
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := k
		if path != "" {
			key = path + "." + k
		}
		f, ok := fields[k]
		if !ok {
			// TOML keys are case-sensitive, but the decoder would
			// still fill method from Method, and from the later of
			// method and Method when both are written: say so and
			// leave it out.
			for name := range fields {
				if strings.EqualFold(name, k) {
					v.add(key, "unknown key; keys are case-sensitive: write %s", name)
					delete(doc, k)
					break
				}
			}
			continue // any other unknown key: reported with a suggestion later
		}
		if msg := typeMismatch(f.Type, doc[k], key, v); msg != "" {
			v.add(key, "%s", msg)
			delete(doc, k)
		}
	}
}

// tomlFields maps the TOML keys of struct t to its fields.
func tomlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// typeMismatch says what is wrong with val as a value of type t, and what
// to write instead; "" when it fits. Tables and arrays of tables are
// checked inside, their own bad values removed.
func typeMismatch(t reflect.Type, val any, key string, v *validator) string {
	short := key[strings.LastIndex(key, ".")+1:]
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := reflect.New(t).Interface().(toml.Unmarshaler).UnmarshalTOML(val); err != nil {
			return err.Error()
		}
		return ""
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		s, ok := val.(string)
		if !ok {
			return fmt.Sprintf("must be a string, not %s; write %s = \"...\"", tomlKind(val), short)
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return err.Error()
		}
		return ""
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeMismatch(t.Elem(), val, key, v)
	case reflect.String:
		if _, ok := val.(string); !ok {
			if SecretKey(key) {
				return fmt.Sprintf("must be a string, not %s; write %s = \"...\" %s", secretKind(val), short, secretNotShown)
			}
			return fmt.Sprintf("must be a string, not %s; write %s = \"%v\"", tomlKind(val), short, val)
		}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint16, reflect.Uint32:
		switch x := val.(type) {
		case int64:
		case string:
			if _, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
				return fmt.Sprintf("must be a number, not a string; write %s = %s without quotes", short, strings.TrimSpace(x))
			}
			return fmt.Sprintf("must be a whole number, not the string %q", x)
		default:
			return fmt.Sprintf("must be a whole number, not %s", tomlKind(val))
		}
	case reflect.Bool:
		switch x := val.(type) {
		case bool:
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return fmt.Sprintf("must be true or false, not a string; write %s = %v without quotes", short, b)
			}
			return fmt.Sprintf("must be true or false, not the string %q", x)
		default:
			return fmt.Sprintf("must be true or false, not %s", tomlKind(val))
		}
	case reflect.Float32, reflect.Float64:
		switch val.(type) {
		case float64, int64:
		default:
			return fmt.Sprintf("must be a number, not %s", tomlKind(val))
		}
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return fmt.Sprintf("must be a table, not %s; write it as a [%s] section", tomlKind(val), key)
		}
		checkTypes(v, m, t, key)
	case reflect.Slice:
		el := t.Elem()
		for el.Kind() == reflect.Pointer {
			el = el.Elem()
		}
		if el.Kind() == reflect.Struct && !reflect.PointerTo(el).Implements(unmarshalerType) {
			tables, ok := val.([]map[string]any)
			if !ok {
				return fmt.Sprintf("must be an array of tables, not %s; write each entry as a [[%s]] block", tomlKind(val), key)
			}
			for i, m := range tables {
				checkTypes(v, m, el, fmt.Sprintf("%s.%d", key, i))
			}
			return ""
		}
		list, ok := val.([]any)
		if !ok {
			if s, isString := val.(string); isString && el.Kind() == reflect.String {
				return fmt.Sprintf("must be a list, not a string; write %s = [%q]", short, s)
			}
			return fmt.Sprintf("must be a list, not %s", tomlKind(val))
		}
		for i, e := range list {
			if msg := typeMismatch(el, e, fmt.Sprintf("%s.%d", key, i), v); msg != "" {
				return fmt.Sprintf("element %d %s", i+1, msg)
			}
		}
	}
	return ""
}

// tomlKind names the TOML type of a decoded value, for messages.
func tomlKind(val any) string {
	switch x := val.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the number %d", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	default:
		return fmt.Sprintf("a %T", val)
	}
}

// secretKeys are the keys whose values are secrets (passwords, token
// secrets, keys): an error about one never shows its value, since load
// errors go to the log at a reload and to terminals and CI logs at a
// check.
var secretKeys = map[string]bool{"password": true, "backend_password": true, "secret": true, "mock_auth_secret": true}

// secretNotShown ends a message about a secret's value.
const secretNotShown = "(the value is not shown: it is a secret)"

// SecretKey says whether key (such as backend.password or
// user[2].secret) holds a secret.
func SecretKey(key string) bool {
	last := key[strings.LastIndex(key, ".")+1:]
	if i := strings.IndexByte(last, '['); i >= 0 {
		last = last[:i]
	}
	return secretKeys[last]
}

// secretKind is tomlKind without the value.
func secretKind(val any) string {
	switch val.(type) {
	case string:
		return "a string"
	case int64, float64:
		return "a number"
	case bool:
		return "true or false"
	}
	return tomlKind(val)
}

// RedactSecretSyntax words a TOML syntax error msg about line text so that
// it shows nothing of a secret written there: the decoder quotes the part
// of an unquoted value it stopped at (expected value but found "hunter"
// instead). A quoted part of msg that is in the value is hidden.
func RedactSecretSyntax(text, msg string) string {
	k, v, ok := strings.Cut(text, "=")
	if !ok || !SecretKey(strings.Trim(strings.TrimSpace(k), `"'`)) {
		return msg
	}
	hidden := false
	for _, q := range []string{`"`, "'"} {
		parts := strings.Split(msg, q)
		for i := 1; i < len(parts)-1; i += 2 {
			if parts[i] != "" && strings.Contains(v, parts[i]) {
				parts[i] = "..."
				hidden = true
			}
		}
		msg = strings.Join(parts, q)
	}
	if hidden {
		msg += " " + secretNotShown
	}
	return msg
}

// knownKeys lists the keys the table at path (a decoded key such as
// server.pg_lisen without its last part) may hold.
func knownKeys(path []string) []string {
	t := reflect.TypeOf(Config{})
	for _, p := range path {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		if _, err := strconv.Atoi(p); err == nil {
			continue
		}
		f, ok := tomlFields(t)[p]
		if !ok {
			return nil
		}
		t = f.Type
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for k := range tomlFields(t) {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Suggest returns the candidate nearest to word when it is near enough to
// be what was meant (a typo, a missing or extra letter, swapped halves of
// an underscore name); "" otherwise.
func Suggest(word string, candidates []string) string {
	best, bestD := "", 3
	lw := strings.ToLower(word)
	for _, c := range candidates {
		d := levenshtein(lw, strings.ToLower(c))
		limit := 2
		if len(c) <= 4 {
			limit = 1
		}
		if d <= limit && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
