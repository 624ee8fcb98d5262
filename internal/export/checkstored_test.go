package export

import (
	"context"
	"crypto/md5"
	"log/slog"
	"testing"

	"gocloud.dev/blob/memblob"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/storageintegration"
	"github.com/auditexport/auditexport/internal/destination"
)

// TestCheckStored: on GCS, an object whose stored MD5 differs from the MD5
// of the bytes sent is deleted and the attempt fails (to be retried); a
// matching one is kept; other providers are not asked.
func TestCheckStored(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	defer b.Close()
	r := &Runner{log: slog.New(slog.DiscardHandler)}
	sum := func(s string) []byte { h := md5.Sum([]byte(s)); return h[:] }
	job := func(provider string) *job {
		return &job{run: &ent.ExportRun{ID: "run_x"}, integ: &ent.StorageIntegration{Provider: storageintegration.Provider(provider)}, key: "k.csv"}
	}
	if err := b.WriteAll(ctx, "k.csv", []byte("abc"), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.checkStored(ctx, job("GCS"), b, Stats{Bytes: 3, MD5: sum("abc")}); err != nil {
		t.Fatalf("matching MD5: %v", err)
	}
	if err := r.checkStored(ctx, job("S3"), b, Stats{Bytes: 3, MD5: sum("abd")}); err != nil {
		t.Fatalf("S3 is not checked: %v", err)
	}
	if ok, _ := b.Exists(ctx, "k.csv"); !ok {
		t.Fatal("a matching object was deleted")
	}
	err := r.checkStored(ctx, job("GCS"), b, Stats{Bytes: 3, MD5: sum("abd")})
	if err == nil {
		t.Fatal("a differing MD5 was accepted")
	}
	if _, transient := destination.Describe(b, err); !transient {
		t.Errorf("the mismatch %v is not retried", err)
	}
	if ok, _ := b.Exists(ctx, "k.csv"); ok {
		t.Fatal("the differing object was not deleted")
	}
}
