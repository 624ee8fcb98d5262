package auditlog

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/auditevent"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
)

// TestRecordConcurrentGroupCommit: 300 calls at once from three
// organisations each return only once their row is stored (read back right
// after the call returns, by event id and in its organisation), none is
// lost or duplicated, and StableSeq afterwards covers every row (on
// PostgreSQL the batches hold the shared sequence lock).
func TestRecordConcurrentGroupCommit(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *db.DB) {
		r := NewRecorder(d.Client, nil).WithDialect(d.Dialect)
		const n = 300
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				org := fmt.Sprintf("org_%d", i%3)
				id, err := r.Record(context.Background(), Event{OrgID: org, Category: "C", Type: fmt.Sprintf("T%d", i)})
				if err != nil {
					errs <- err
					return
				}
				ev, err := d.Client.AuditEvent.Query().Where(auditevent.EventID(id)).Only(tenant.WithOrg(context.Background(), org))
				if err != nil {
					errs <- fmt.Errorf("event %d not readable once Record returned: %w", i, err)
					return
				}
				if ev.EventType != fmt.Sprintf("T%d", i) {
					errs <- fmt.Errorf("event %d stored as %s", i, ev.EventType)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		ctx := tenant.System(context.Background())
		rows, err := d.Client.AuditEvent.Query().All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]int{}
		var maxID int64
		for _, e := range rows {
			types[e.EventType]++
			maxID = max(maxID, e.ID)
		}
		if len(rows) != n || len(types) != n {
			t.Fatalf("%d rows of %d distinct types, want %d and %d", len(rows), len(types), n, n)
		}
		if w, err := StableSeq(context.Background(), d); err != nil || w != maxID {
			t.Fatalf("StableSeq = %d (%v), want %d", w, err, maxID)
		}
	})
}

// TestGroupCommitBatchIsAtomic: a batch holding a row the database refuses
// (a duplicate event id) stores none of its rows, so db.Group's retry of
// each row alone (TestGroupIsolatesAFailingItem) writes each row once: the
// caller of the refused row fails, the others succeed.
func TestGroupCommitBatchIsAtomic(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *db.DB) {
		r := NewRecorder(d.Client, nil).WithDialect(d.Dialect)
		id, err := r.Record(context.Background(), Event{OrgID: "org_a", Category: "C", Type: "FIRST"})
		if err != nil {
			t.Fatal(err)
		}
		row := func(eventID, typ string) *ent.AuditEvent {
			return &ent.AuditEvent{OrgID: "org_a", EventID: eventID, EventCategory: "C", EventType: typ,
				EventStatus: StatusSuccess, Metadata: "{}"}
		}
		ok1, dup, ok2 := row("evt_ok1", "OK1"), row(id, "DUP"), row("evt_ok2", "OK2")
		if err := r.insert([]*ent.AuditEvent{ok1, dup, ok2}); err == nil {
			t.Fatal("a batch with a duplicate event id was stored")
		}
		if n, err := d.Client.AuditEvent.Query().Count(tenant.System(context.Background())); err != nil || n != 1 {
			t.Fatalf("%d rows stored after the failed batch (%v), want 1 (FIRST)", n, err)
		}
		for _, e := range []*ent.AuditEvent{ok1, dup, ok2} {
			if err := r.insert([]*ent.AuditEvent{e}); (e == dup) != (err != nil) {
				t.Errorf("row %s alone: err %v", e.EventType, err)
			}
		}
		n, err := d.Client.AuditEvent.Query().Count(tenant.System(context.Background()))
		if err != nil || n != 3 {
			t.Fatalf("%d rows stored (%v), want 3 (FIRST, OK1, OK2)", n, err)
		}
	})
}
