package verify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"

	"github.com/auditexport/auditexport/clients/go/manifest"
)

// chainSpec is one export of a synthetic incremental schedule.
type chainSpec struct {
	after, through int64
	period         int // scheduled period index (period start = base + period hours)
}

// writeChain writes objects (JSONL, one line per row) and their signed
// manifests as the server would, and returns the bucket and the keys.
func writeChain(t *testing.T, specs []chainSpec) (*blob.Bucket, map[string]ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fileblob.OpenBucket(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := ""
	for i, s := range specs {
		key := fmt.Sprintf("inc/audit-%02d.jsonl", i)
		var body strings.Builder
		for r := s.after + 1; r <= s.through; r++ {
			fmt.Fprintf(&body, "{\"seq\":%d}\n", r)
		}
		sum := sha256.Sum256([]byte(body.String()))
		if err := b.WriteAll(ctx, key, []byte(body.String()), nil); err != nil {
			t.Fatal(err)
		}
		m := &manifest.Manifest{Version: manifest.Version, OrganizationID: "org_1", ScheduleID: "sch_1", RunID: fmt.Sprintf("run_%d", i),
			Trigger: "SCHEDULED", PeriodStart: base.Add(time.Duration(s.period) * time.Hour), PeriodEnd: base.Add(time.Duration(s.period+1) * time.Hour),
			SequenceWindow: &manifest.Window{After: s.after, Through: s.through}, Element: []byte(`{}`), Format: "JSONL", Compression: "NONE",
			RowCount: s.through - s.after, ByteCount: int64(body.Len()), SHA256: hex.EncodeToString(sum[:]), ObjectKey: key,
			CreateTime: base.Add(time.Duration(i) * time.Minute), Chain: manifest.Chain{Sequence: int64(i + 1), Previous: prev}}
		file, err := manifest.Sign(m, "sk_1", priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.WriteAll(ctx, key+manifest.Suffix, file, nil); err != nil {
			t.Fatal(err)
		}
		prev = manifest.Hash(file)
	}
	return b, map[string]ed25519.PublicKey{"sk_1": pub}
}

// TestIncrementalWindows: windows that tile verify clean; a gap, an
// overlap and a period exported twice are each found and named.
func TestIncrementalWindows(t *testing.T) {
	for _, c := range []struct {
		name  string
		specs []chainSpec
		want  []string
	}{
		{"tiled", []chainSpec{{0, 5, 0}, {5, 9, 1}, {9, 12, 2}}, nil},
		{"gap", []chainSpec{{0, 5, 0}, {6, 9, 1}, {9, 12, 2}}, []string{WindowGap + " inc/audit-01.jsonl" + manifest.Suffix}},
		{"overlap", []chainSpec{{0, 5, 0}, {5, 9, 1}, {7, 12, 2}}, []string{WindowOverlap + " inc/audit-02.jsonl" + manifest.Suffix}},
		{"period twice", []chainSpec{{0, 5, 0}, {5, 9, 1}, {9, 12, 1}}, []string{DuplicatePeriod + " inc/audit-02.jsonl" + manifest.Suffix}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, keys := writeChain(t, c.specs)
			rep, err := Bucket(context.Background(), b, "", Options{Keys: keys, Heads: map[string]Head{}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range rep.Findings {
				if f.Kind != UnknownSchedule { // Heads is empty on purpose: checked below
					got = append(got, f.Kind+" "+f.Object)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("findings %q, want %q", got, c.want)
			}
			if len(rep.Chains) != 1 || rep.Chains[0].Links != len(c.specs) || rep.Verified != len(c.specs) {
				t.Errorf("report: %+v", rep)
			}
			// Heads given without this schedule: the chain is not vouched for.
			if !slices.ContainsFunc(rep.Findings, func(f Finding) bool { return f.Kind == UnknownSchedule }) {
				t.Errorf("no %s finding with empty heads: %v", UnknownSchedule, rep.Findings)
			}
		})
	}
}
