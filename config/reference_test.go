package config

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The configuration reference (docs/configuration.md) lists every key of
// Config, no other, with the default Load gives it and whether a reload
// applies it.
func TestTheConfigurationReferenceMatchesTheConfigStruct(t *testing.T) {
	f, err := os.Open("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type row struct{ def, applies string }
	doc := map[string]row{}
	section := ""
	heading := regexp.MustCompile("^## (?:Top level|`\\[\\[?(\\w+)\\]\\]?`)$")
	rowRE := regexp.MustCompile("^\\| `(\\w+)` \\| (.*?) \\| (reload|restart) \\| .+ \\|$")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := heading.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		if strings.HasPrefix(line, "| `") {
			m := rowRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("malformed row: %s", line)
			}
			key := m[1]
			if section != "" {
				key = section + "." + key
			}
			doc[key] = row{strings.Trim(m[2], "`"), m[3]}
		}
	}
	want := map[string]reflect.Type{}
	var walk func(t reflect.Type, prefix string, depth int)
	walk = func(t reflect.Type, prefix string, depth int) {
		for name, f := range tomlFields(t) {
			ft := f.Type
			for ft.Kind() == reflect.Pointer || (ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct) {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && depth == 0 && f.Type != reflect.TypeOf(Duration{}) {
				walk(ft, name+".", 1)
				continue
			}
			want[prefix+name] = f.Type
		}
	}
	walk(reflect.TypeOf(Config{}), "", 0)
	var missing, extra []string
	for k := range want {
		if _, ok := doc[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range doc {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("docs/configuration.md is out of step with Config:\nnot documented: %v\ndocumented but not a key: %v", missing, extra)
	}

	// Defaults: every optional section written with its required keys
	// only, so that Load fills in the rest.
	cfg, _ := Parse("/x/config.toml", []byte(`
[tls]
cert_file = "c"
key_file = "k"
[auth_query]
[tokens]
[[databases]]
name = "app"
[[jwt_issuers]]
issuer = "https://idp.example.com/"
[[hba]]
method = "trust"
`))
	if cfg == nil {
		t.Fatal("the defaults document does not parse")
	}
	// Keys whose default is derived from another key's value.
	derived := map[string]bool{"jwt_issuers.jwks_url": true, "databases.backend_dbname": true}
	for key, r := range doc {
		if r.def == "(required)" || derived[key] {
			continue
		}
		got, ok := valueAt(reflect.ValueOf(cfg).Elem(), strings.Split(key, "."))
		if !ok {
			t.Fatalf("%s: no value in Config", key)
		}
		if got != r.def && !sameValue(got, r.def) {
			t.Errorf("%s: docs/configuration.md says the default is %s, Load gives %s", key, r.def, got)
		}
		if restart := RestartKeys[key]; restart != (r.applies == "restart") {
			t.Errorf("%s: docs/configuration.md says %q; RestartKeys says restart=%v", key, r.applies, restart)
		}
	}
}

// valueAt renders the value at a key path the way the reference writes it.
func valueAt(v reflect.Value, path []string) (string, bool) {
	for _, p := range path {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct {
			if v.Kind() == reflect.Pointer {
				if v.IsNil() {
					return "", false
				}
				v = v.Elem()
			} else {
				if v.Len() == 0 {
					return "", false
				}
				v = v.Index(0)
			}
		}
		f, ok := tomlFields(v.Type())[p]
		if !ok {
			return "", false
		}
		v = v.FieldByIndex(f.Index)
	}
	return render(v.Interface()), true
}

func render(x any) string {
	switch v := x.(type) {
	case string:
		return strconv.Quote(v)
	case Duration:
		return strconv.Quote(FormatDuration(v.Duration))
	case []string:
		return renderList(v)
	case StringList:
		if len(v) == 1 {
			return strconv.Quote(v[0])
		}
		return renderList(v)
	default:
		return fmt.Sprint(v)
	}
}

func renderList(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// sameValue accepts what differs only in spelling: durations ("10m" is
// "10m0s") and relative paths (resolved against the config's folder).
func sameValue(got, doc string) bool {
	g, err1 := strconv.Unquote(got)
	d, err2 := strconv.Unquote(doc)
	if err1 != nil || err2 != nil {
		return false
	}
	if gd, err := ParseDuration(g); err == nil {
		dd, err := ParseDuration(d)
		return err == nil && gd == dd
	}
	return d != "" && g == "/x/"+d
}
