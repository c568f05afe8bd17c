package config

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// keyLines maps every key of a TOML document to the line it is written on, so
// that validation errors can point at the line, as the user sees it in the
// editor. BurntSushi/toml keeps positions private; this scanner understands the
// subset of TOML that configuration files use (tables, arrays of tables,
// dotted keys are kept as written). Keys of arrays of tables carry their
// index: "hba.2.method" is the third [[hba]] block's method.
type keyLines map[string]int

func scanKeyLines(data []byte) keyLines {
	out := keyLines{}
	counts := map[string]int{} // array-of-tables name -> blocks seen
	prefix := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	depth := 0 // open brackets of a multi-line array value
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if depth > 0 {
			depth += strings.Count(line, "[") - strings.Count(line, "]")
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		switch {
		case strings.HasPrefix(line, "[["):
			name := tableName(line[2:], "]]")
			name = arrayPath(name, counts)
			counts[name]++
			prefix = name + "." + strconv.Itoa(counts[name]-1)
			out[prefix] = n
		case line[0] == '[':
			name := tableName(line[1:], "]")
			prefix = arrayPath(name, counts)
			out[prefix] = n
		default:
			eq := strings.IndexByte(line, '=')
			if eq <= 0 {
				continue
			}
			key := strings.Trim(strings.TrimSpace(line[:eq]), `"'`)
			full := key
			if prefix != "" {
				full = prefix + "." + key
			}
			if _, seen := out[full]; !seen {
				out[full] = n
			}
			val := line[eq+1:]
			if i := strings.IndexByte(val, '#'); i >= 0 && !strings.ContainsAny(val[:i], `"'`) {
				val = val[:i]
			}
			depth = strings.Count(val, "[") - strings.Count(val, "]")
			if depth < 0 {
				depth = 0
			}
		}
	}
	return out
}

func tableName(s, closer string) string {
	if i := strings.Index(s, closer); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// arrayPath rewrites "user.jwt" to "user.3.jwt" when "user" is an array of
// tables whose fourth block is open.
func arrayPath(name string, counts map[string]int) string {
	parts := strings.Split(name, ".")
	for i := len(parts) - 1; i > 0; i-- {
		head := strings.Join(parts[:i], ".")
		if c, ok := counts[head]; ok && c > 0 {
			return head + "." + strconv.Itoa(c-1) + "." + strings.Join(parts[i:], ".")
		}
	}
	return name
}

// line finds the line of key, or of its closest enclosing table.
func (k keyLines) line(key string) int {
	for key != "" {
		if n, ok := k[key]; ok {
			return n
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// KeyLines indexes the keys of a TOML document by line, for other files
// pgwarden validates the same way (the users file).
func KeyLines(data []byte) LineIndex { return LineIndex{scanKeyLines(data)} }

// LineIndex finds the line a key was written on.
type LineIndex struct{ k keyLines }

// Line returns the line of key ("user.2.password"), or of its table, or 0.
func (l LineIndex) Line(key string) int { return l.k.line(key) }

// Find locates a key reported without array indexes ("user.pasword").
func (l LineIndex) Find(key string) int {
	if n := l.k.line(key); n > 0 && l.k[key] > 0 {
		return n
	}
	return l.k.findUnindexed(key)
}
