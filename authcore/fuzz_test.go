package authcore

import "testing"

// FuzzParseHash: stored hashes come from files and auth_query rows; no
// input may panic the parser or make verification allocate without bound.
func FuzzParseHash(f *testing.F) {
	f.Add("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
	f.Add("$2b$04$abcdefghijklmnopqrstuu5Ty1M3Y1Yr3vZPq8B9o2Z2tzb2d1Z2")
	f.Add("$pbkdf2-sha512$1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		switch v := h.(type) {
		case *SCRAMVerifier:
			if v.Iterations > 100000 {
				return // valid but too slow to verify in a fuzz loop
			}
		case *pbkdf2Hash:
			if v.iter > 100000 {
				return
			}
		case *argon2Hash:
			if v.mem > 64*1024 || v.time > 4 {
				return
			}
		case bcryptHash:
			return // cost up to 31 is legal and far too slow here
		}
		h.Verify("x")
	})
}
