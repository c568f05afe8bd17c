package httpfront

import "testing"

func TestTxEndingStatementsAreKnownBeforeTheyRun(t *testing.T) {
	ending := []string{"COMMIT", "commit;", " Commit AND CHAIN", "END", "end transaction", "ABORT", "ROLLBACK",
		"rollback work", "ROLLBACK TRANSACTION AND NO CHAIN", "PREPARE TRANSACTION 'x'", "/* c */ COMMIT",
		"-- x\nCOMMIT", "/* a /* nested */ b */commit", "COMMIT PREPARED 'x'"}
	for _, s := range ending {
		if _, ok := txEndingStatement(s); !ok {
			t.Errorf("%q must be refused", s)
		}
	}
	staying := []string{"SELECT 1", "INSERT INTO t VALUES (1)", "ROLLBACK TO SAVEPOINT a", "rollback to a",
		"ROLLBACK WORK TO SAVEPOINT a", "SAVEPOINT a", "RELEASE SAVEPOINT a", "PREPARE p AS SELECT 1",
		"SELECT 'COMMIT'", "committed_at", "endpoint", "/* unterminated COMMIT", "", "(SELECT 1)"}
	for _, s := range staying {
		if _, ok := txEndingStatement(s); ok {
			t.Errorf("%q must be allowed", s)
		}
	}
}
