package authcore

import "testing"

// FuzzParseHash: stored hashes come from files and auth_query rows; no
// input may panic the parser or make verification allocate without bound.
func FuzzParseHash(f *testing.F) {
	f.Add("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
	f.Add("$2b$04$abcdefghijklmnopqrstuu5Ty1M3Y1Yr3vZPq8B9o2Z2tzb2d1Z2")
	f.Add("$pbkdf2-sha512$1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
	// Costs at and over the default bounds.
	f.Add("SCRAM-SHA-256$10000000:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
	f.Add("SCRAM-SHA-256$100001:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
	f.Add("$2b$15$abcdefghijklmnopqrstuu5Ty1M3Y1Yr3vZPq8B9o2Z2tzb2d1Z2")
	f.Add("$pbkdf2-sha512$1000001$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=262145,t=11,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		// The cost check never panics, and refuses what the bound says.
		if err := DefaultHashLimits.Check(h); err == nil {
			if v, ok := h.(*SCRAMVerifier); ok && v.Iterations > DefaultHashLimits.SCRAMIterations {
				t.Fatalf("%d iterations passed the bound", v.Iterations)
			}
		}
		decoy(h) // a decoy can be made of any parsed hash
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
