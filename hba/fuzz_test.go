package hba

import "testing"

// FuzzParseFile feeds arbitrary text to the pg_hba.conf parser: no panic,
// and every accepted rule is complete.
func FuzzParseFile(f *testing.F) {
	f.Add("host all all 127.0.0.1/32 md5\n")
	f.Add("local all postgres peer\nhostssl \"a,b\" +g,/^x 10.0.0.0 255.0.0.0 cert clientcert=verify-full # c\n")
	f.Add("host all \\\n all ::1/128 trust\n")
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseFile("f", []byte(s), Env{TLS: true, ClientCA: true})
		if err != nil {
			return
		}
		for _, r := range rules {
			if len(r.Addresses) == 0 || len(r.Databases) == 0 || len(r.Users) == 0 || !Known(r.Method) {
				t.Fatalf("incomplete rule from %q: %+v", s, r)
			}
		}
	})
}
