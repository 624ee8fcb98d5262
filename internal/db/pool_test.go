package db_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestPoolKeepsIdleConnections: after a burst that used every connection of
// the pool, all of them stay open. With database/sql's default of 2 idle
// connections the others were closed on release and reopened by the next
// burst (on PostgreSQL a new backend process each time).
func TestPoolKeepsIdleConnections(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		for _, n := range []int{0, 5} {
			d.SetMaxConns(n)
			want := n
			if n == 0 {
				want = db.DefaultMaxConns(d.Dialect)
			}
			if got := d.SQL.Stats().MaxOpenConnections; got != want {
				t.Fatalf("SetMaxConns(%d): max open %d, want %d", n, got, want)
			}
			ctx := context.Background()
			conns := make([]*sql.Conn, want)
			for i := range conns {
				c, err := d.SQL.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns[i] = c
			}
			for _, c := range conns {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			st := d.SQL.Stats()
			if st.Idle != want || st.OpenConnections != want {
				t.Errorf("SetMaxConns(%d): after a burst of %d, %d open and %d idle; want all %d kept", n, want, st.OpenConnections, st.Idle, want)
			}
		}
	})
}
