// Package leftover describes what a failed or canceled export run left in
// its store and must still be settled there, once the store answers again:
// objects it stored, or may have stored, that are to be removed, and a
// signed manifest that is to be uploaded. They are kept on the run's row
// (ExportRun.leftovers), so that a restart, or another replica, finishes
// the work (internal/export's upload sweep).
package leftover

import "time"

// Kind is what is to be done with an Object.
type Kind string

const (
	// Remove: the run stored, or may have stored, the object (the store
	// committed an upload whose answer never came) and then failed. It
	// is deleted if it is there with Size bytes, written since Since.
	Remove Kind = "remove"
	// UploadManifest: the run's object was stored and its manifest's
	// link appended to the schedule's chain, but the manifest upload
	// failed. The manifest (the run's recorded bytes) is uploaded, so
	// that the chain an auditor verifies has no gap.
	UploadManifest Kind = "upload_manifest"
)

// Object is one thing to settle, in the bucket the run wrote to.
type Object struct {
	Kind   Kind      `json:"kind"`
	Bucket string    `json:"bucket"`
	Key    string    `json:"key"`
	URI    string    `json:"uri"`
	Size   int64     `json:"size,omitempty"`
	Since  time.Time `json:"since,omitzero"`
}
