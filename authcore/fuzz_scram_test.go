package authcore

import (
	"context"
	"testing"
)

// FuzzSCRAMExchange: arbitrary client-first and client-final messages end
// in a protocol violation or a failure, never a panic or a success.
func FuzzSCRAMExchange(f *testing.F) {
	f.Add("n,,n=,r=abc", "c=biws,r=abc,p=AAAA")
	f.Add("p=tls-server-end-point,,n=,r=x", "c=,r=,p=")
	f.Add("y,,n=user,r=\x00", "")
	h, _ := HashPassword(AlgoSCRAM, "fuzz-password")
	us, _ := ParseUsers("u", []byte("[[user]]\nname = \"alice\"\npassword = \""+h+"\"\n"))
	a := NewAuthenticator(us, NewHashLimiter(0))
	f.Fuzz(func(t *testing.T, first, final string) {
		for _, cb := range [][]byte{nil, make([]byte, 32)} {
			for _, mech := range []string{MechSCRAM, MechSCRAMPlus} {
				s, err := a.StartSCRAM(context.Background(), "alice", mech, cb)
				if err != nil {
					continue
				}
				if _, _, err := s.Step([]byte(first)); err != nil {
					continue
				}
				if _, _, err := s.Step([]byte(final)); err == nil {
					t.Fatalf("a made-up proof was accepted: %q %q", first, final)
				}
			}
		}
	})
}
