package integration_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// kwWriter is one client's view of its own writes: what the server
// acknowledged, and what was in flight when the server died (it may or may
// not have committed).
type kwWriter struct {
	acked    map[string]string // workbook id -> last acknowledged name
	inFlight map[string]string // workbook id -> name of an unacknowledged rename
}

// TestKillDuringWriteBursts, on SQLite (WAL) and PostgreSQL: 16 clients
// create and rename workbooks as fast as the server answers; the server is
// SIGKILLed mid-burst, three times. After each restart the database is
// sound (SQLite: PRAGMA integrity_check and foreign_key_check) and no
// acknowledged write is missing: every acknowledged workbook exists and
// carries its last acknowledged name, or the name of the rename that was
// in flight when the server died.
func TestKillDuringWriteBursts(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend)
			const clients = 16
			writers := make([]*kwWriter, clients)
			for i := range writers {
				writers[i] = &kwWriter{acked: map[string]string{}, inFlight: map[string]string{}}
			}
			for cycle := 0; cycle < 3; cycle++ {
				ctx, cancel := context.WithCancel(Ctx(s.AdminKey))
				cl := s.Clients()
				var wg sync.WaitGroup
				var mu sync.Mutex
				acks := 0
				for i, w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for n := 0; ctx.Err() == nil; n++ {
							ex, err := cl.Workbooks.ExploreTable(ctx, &pb.ExploreTableRequest{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"})
							if err != nil {
								return // the server died: an unacknowledged create may or may not exist
							}
							id := ex.GetWorkbook().GetId()
							w.acked[id] = ex.GetWorkbook().GetName()
							name := fmt.Sprintf("w%d-c%d-n%d", i, cycle, n)
							w.inFlight[id] = name
							_, err = cl.Workbooks.UpdateWorkbook(ctx, &pb.UpdateWorkbookRequest{
								Workbook: &pb.Workbook{Id: id, Name: name}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}})
							if err != nil {
								return
							}
							delete(w.inFlight, id)
							w.acked[id] = name
							mu.Lock()
							acks++
							mu.Unlock()
						}
					}()
				}
				// Kill once the burst is under way (a few hundred writes).
				deadline := time.Now().Add(30 * time.Second)
				for {
					mu.Lock()
					n := acks
					mu.Unlock()
					if n >= 100*(cycle+1) || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				s.Kill()
				cancel()
				wg.Wait()
				if backend == "sqlite" {
					kwCheckSQLite(t, strings.TrimPrefix(s.DSN, "sqlite://"))
				}
				s.start()
				kwCheckWrites(t, s, writers)
			}
			total := 0
			for _, w := range writers {
				total += len(w.acked)
			}
			t.Logf("%s: %d acknowledged workbooks over 3 kills, all present", backend, total)
		})
	}
}

// kwCheckSQLite opens the file the killed server left (WAL and all) and
// runs SQLite's own consistency checks.
func kwCheckSQLite(t *testing.T, path string) {
	t.Helper()
	d, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var res string
	if err := d.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		t.Fatalf("PRAGMA integrity_check after SIGKILL: %q %v", res, err)
	}
	rows, err := d.Query(`PRAGMA foreign_key_check`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Fatal("PRAGMA foreign_key_check after SIGKILL reports violations")
	}
}

// kwCheckWrites: every acknowledged workbook exists with its last
// acknowledged name (or the in-flight rename's).
func kwCheckWrites(t *testing.T, s *Server, writers []*kwWriter) {
	t.Helper()
	cl := s.Clients()
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), time.Minute)
	defer cancel()
	for _, w := range writers {
		for id, name := range w.acked {
			r, err := cl.Workbooks.GetWorkbook(ctx, &pb.GetWorkbookRequest{Id: id})
			if err != nil {
				t.Fatalf("acknowledged workbook %s lost after SIGKILL: %v", id, err)
			}
			got := r.GetWorkbook().GetName()
			if got != name && got != w.inFlight[id] {
				t.Fatalf("workbook %s after SIGKILL is named %q, want the acknowledged %q (or the in-flight %q)", id, got, name, w.inFlight[id])
			}
			if got != name {
				w.acked[id] = got // the in-flight rename committed
			}
			delete(w.inFlight, id)
		}
	}
}
