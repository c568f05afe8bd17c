package authcore

import (
	"testing"

	"github.com/pgwarden/pgwarden/hba"
)

// The method table config load checks rules against (package hba) and the
// one the gate runs (here) name the same methods for the same protocols.
func TestEveryMethodRunsWhereItMayBeConfigured(t *testing.T) {
	for _, m := range hba.Methods() {
		run, ok := methods[m]
		if !ok {
			t.Errorf("method %s may be configured but the gate cannot run it", m)
			continue
		}
		pg, http := hba.Serves(m)
		if run.pg != pg || run.http != http {
			t.Errorf("method %s: configurable for pg %v http %v, runs for pg %v http %v", m, pg, http, run.pg, run.http)
		}
		if run.run == nil && m != hba.Reject {
			t.Errorf("method %s has no check", m)
		}
	}
	if len(methods) != len(hba.Methods()) {
		t.Errorf("the gate runs %d methods, config knows %d", len(methods), len(hba.Methods()))
	}
}
