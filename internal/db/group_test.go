package db_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/organization"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestWritesConcurrentCallers: 120 concurrent callers each write a row
// through one Writes; every tenth fails its own function after writing. A
// caller's row is readable as soon as Do returns nil; a failed caller gets
// its own error and its row is not stored; no row is stored twice (a batch
// that failed because of another caller is rolled back before its callers
// run again alone).
func TestWritesConcurrentCallers(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		w := db.NewWrites(d.Client, 4)
		ctx := tenant.System(context.Background())
		const n = 120
		refused := errors.New("refused by its caller")
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("org-%03d", i)
				err := w.Do(func(tx *ent.Client) error {
					if err := tx.Organization.Create().SetName(name).Exec(ctx); err != nil {
						return err
					}
					if i%10 == 3 {
						return refused
					}
					return nil
				})
				if i%10 == 3 {
					if !errors.Is(err, refused) {
						t.Errorf("%s: err %v, want its own error", name, err)
					}
					return
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				if ok, err := d.Client.Organization.Query().Where(organization.Name(name)).Exist(ctx); err != nil || !ok {
					t.Errorf("%s not readable once Do returned (%v)", name, err)
				}
			}()
		}
		wg.Wait()
		orgs, err := d.Client.Organization.Query().All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, o := range orgs {
			seen[o.Name]++
		}
		for i := range n {
			name, want := fmt.Sprintf("org-%03d", i), 1
			if i%10 == 3 {
				want = 0
			}
			if seen[name] != want {
				t.Errorf("%s stored %d times, want %d", name, seen[name], want)
			}
		}
	})
}
