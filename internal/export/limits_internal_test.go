package export

import (
	"context"
	"testing"

	"github.com/auditexport/auditexport/internal/testenv"
)

// TestEndManualTxDropsAFailedConnection: when createRun's COMMIT or
// ROLLBACK fails, its connection (maybe still inside the transaction) is
// never handed out again, and one that ended cleanly stays in the pool.
func TestEndManualTxDropsAFailedConnection(t *testing.T) {
	d := testenv.PostgresDB(t)
	d.SQL.SetMaxOpenConns(1)
	ctx := context.Background()
	pid := func() (n int) {
		t.Helper()
		conn, err := d.SQL.Conn(ctx)
		testenv.Must(t, err)
		defer conn.Close()
		testenv.Must(t, conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&n))
		return n
	}
	before := pid()
	conn, err := d.SQL.Conn(ctx)
	testenv.Must(t, err)
	if _, err := conn.ExecContext(ctx, "BEGIN; SELECT pg_advisory_xact_lock(1)"); err != nil {
		t.Fatal(err)
	}
	if err := endManualTx(ctx, conn, "COMMIT_NOT_A_STATEMENT"); err == nil {
		t.Fatal("a failing end of the transaction returned no error")
	}
	_ = conn.Close()
	if after := pid(); after == before {
		t.Fatalf("the connection whose transaction could not be ended (backend %d) went back to the pool", before)
	}
	// The statement that works leaves the connection in the pool.
	conn, err = d.SQL.Conn(ctx)
	testenv.Must(t, err)
	var inTx int
	testenv.Must(t, conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&inTx))
	if _, err := conn.ExecContext(ctx, "BEGIN; SELECT pg_advisory_xact_lock(1)"); err != nil {
		t.Fatal(err)
	}
	testenv.Must(t, endManualTx(ctx, conn, "ROLLBACK"))
	_ = conn.Close()
	if again := pid(); again != inTx {
		t.Fatalf("a cleanly ended connection was dropped (backend %d, then %d)", inTx, again)
	}
}
