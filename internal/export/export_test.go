package export

import (
	"context"
	"time"
)

// SetBeforeUpload installs a hook that runs between a run's existence check
// and its conditional upload; the returned func removes it.
func SetBeforeUpload(f func(key string)) func() {
	beforeUpload = f
	return func() { beforeUpload = nil }
}

// SetBeforeStream installs a hook that runs on an export's reading
// goroutine before it reads; the returned func removes it.
func SetBeforeStream(f func()) func() {
	beforeStream = f
	return func() { beforeStream = nil }
}

// SetManifestUploadFault makes manifest uploads fail with f's error (nil:
// upload); the returned func removes it.
func SetManifestUploadFault(f func(key string) error) func() {
	manifestUploadFault.Store(&f)
	return func() { manifestUploadFault.Store(nil) }
}

// SweepOnce makes one pass of the upload sweep (SweepUploads) and returns
// how many runs it left for a later pass.
func SweepOnce(ctx context.Context, r *Runner) int {
	return r.sweepUploads(ctx, map[string]time.Time{})
}
