package db

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/auditexport/auditexport/internal/tenant"
)

// TestSQLiteGate: on SQLite every ent transaction holds the process's
// write gate from begin to its end (commit, rollback, or both: released
// once), a begin waiting for the gate gives up with its context, and 100
// concurrent writers all commit.
func TestSQLiteGate(t *testing.T) {
	ctx := tenant.System(context.Background())
	d, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "gate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Client.Schema.Create(ctx); err != nil {
		t.Fatal(err)
	}
	g := d.gate
	if g == nil {
		t.Fatal("SQLite client without the write gate")
	}
	held := func() bool { return len(g.gate) == 1 }

	tx, err := d.Client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !held() {
		t.Fatal("an open transaction does not hold the gate")
	}
	// A second writer waits for the gate; its context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		_, err := d.Client.Tx(cctx)
		waited <- err
	}()
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("begin with a canceled context while the gate is held: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback() // after commit, as deferred rollbacks do: no second release
	if held() {
		t.Fatal("gate still held after commit")
	}
	tx, err = d.Client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil || held() {
		t.Fatalf("rollback: %v, gate held %v", err, held())
	}

	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Client.Organization.Create().SetName("o").Exec(ctx); err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if n, err := d.Client.Organization.Query().Count(ctx); err != nil || n != 100 {
		t.Fatalf("%d organizations (%v), want 100", n, err)
	}
	if held() {
		t.Fatal("gate held after every writer returned")
	}
}
