package destination

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"gocloud.dev/blob"
)

// ProbeResult is the outcome of Probe.
type ProbeResult struct {
	OK         bool
	Latency    time.Duration
	FailedStep string // OPEN, WRITE, READ, DELETE
	Provider   *ProviderError
	Message    string // our description when the provider said nothing (e.g. connection refused); redacted, bounded
	URI        string
}

// Probe writes, reads back and deletes a small object under the
// integration's destination with its credentials.
func Probe(ctx context.Context, in Integration, o OpenOptions) ProbeResult {
	start := time.Now()
	var res ProbeResult
	secrets := secretValues(in.Creds)
	fail := func(step string, b *blob.Bucket, err error) ProbeResult {
		res.FailedStep = step
		res.Provider, _ = Describe(b, err)
		if res.Provider != nil {
			res.Provider.Message = Redact(res.Provider.Message, secrets...)
		} else {
			res.Message = Redact(Message(err), secrets...)
		}
		res.Latency = time.Since(start)
		return res
	}
	b, base, err := Open(ctx, in, o)
	if err != nil {
		return fail("OPEN", nil, err)
	}
	defer b.Close()
	if err := CheckObjectLock(ctx, b, base.Bucket, in.ObjectLock); err != nil {
		return fail("OBJECT_LOCK", b, err)
	}
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	name := ".auditexport-probe-" + hex.EncodeToString(suffix)
	key := base.Path + name
	if base.Provider == Local {
		key = name
	}
	res.URI = base.String() + name
	payload := []byte("auditexport connectivity probe " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	// Upload, not WriteAll: gocloud's azureblob writer (v0.47) panics in
	// Close after a failed upload (see export.Runner.upload).
	if err := b.Upload(ctx, key, bytes.NewReader(payload), &blob.WriterOptions{ContentType: "text/plain"}); err != nil {
		return fail("WRITE", b, err)
	}
	got, err := b.ReadAll(ctx, key)
	if err != nil {
		_ = b.Delete(ctx, key)
		return fail("READ", b, err)
	}
	if !bytes.Equal(got, payload) {
		_ = b.Delete(ctx, key)
		return fail("READ", b, fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(payload)))
	}
	if err := b.Delete(ctx, key); err != nil {
		return fail("DELETE", b, err)
	}
	res.OK = true
	res.Latency = time.Since(start)
	return res
}
