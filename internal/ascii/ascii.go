// Package ascii compares names the way PostgreSQL and DNS do: ignoring the
// case of ASCII letters only. strings.EqualFold folds Unicode as well, so it
// takes "localhoſt" (a long s) for localhost and "K" (the Kelvin sign) for k,
// which neither PostgreSQL's pg_strncasecmp nor a DNS server does.
package ascii

// EqualFold reports whether a and b are equal with ASCII letters compared
// without regard to case.
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// Lower is s with its ASCII capital letters in lower case, as PostgreSQL
// folds an unquoted identifier in a UTF-8 database.
func Lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lower(b[j])
			}
			return string(b)
		}
	}
	return s
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// IsLowerName reports whether s is made of lower-case ASCII letters,
// digits and underscores only, as every key pgwarden reads is written
// (config, users file, HTTP bodies): a key with anything else is another
// key, though a decoder that folds case would take it for one of these.
func IsLowerName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}
