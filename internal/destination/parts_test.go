package destination_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestS3UploadFirstPartIsOnePart: against a real S3 server, a streamed
// upload through UploadOptions decides on multipart after one part size
// (8 MiB) instead of the transfer manager's 16 MiB threshold, so its first
// read fills one part buffer (what keeps an export's memory down,
// docs/BENCHMARKS.md). Seen from outside: a 12 MiB body is stored as a
// multipart object of 2 parts (its ETag ends in "-2"), where the transfer
// manager's own threshold sends it as one PUT — the control below. A
// body under one part is still one PUT; every object reads back whole.
func TestS3UploadFirstPartIsOnePart(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.CreateBucket(t, "parts")
	in := destination.Integration{Provider: destination.S3, Destination: "s3://parts/p/", Endpoint: m.Endpoint,
		Creds: destination.Credentials{Kind: "aws_access_key", AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey}}
	o := destination.OpenOptions{AllowPrivateEndpoints: true}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, base, err := destination.Open(ctx, in, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, c := range []struct {
		name     string
		size     int
		hooked   bool // through UploadOptions with the bucket
		wantETag string
	}{
		{"12MiB", 12 << 20, true, "-2"},
		{"12MiB-sdk-threshold", 12 << 20, false, ""},
		{"3MiB", 3 << 20, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := make([]byte, c.size)
			_, _ = rand.Read(body)
			key := base.Path + c.name + ".bin"
			var ub *blob.Bucket
			if c.hooked {
				ub = b
			}
			wo := destination.UploadOptions(o, ub, &blob.WriterOptions{BufferSize: 8 << 20, IfNotExist: true, ContentType: "application/octet-stream"})
			// Streamed like an export: no length, no Seek.
			if err := b.Upload(ctx, key, io.MultiReader(bytes.NewReader(body)), wo); err != nil {
				t.Fatal(err)
			}
			attrs, err := b.Attributes(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			etag := strings.Trim(attrs.ETag, `"`)
			_, parts, multipart := strings.Cut(etag, "-")
			if c.wantETag == "" && multipart || c.wantETag != "" && !strings.HasSuffix(etag, c.wantETag) {
				t.Errorf("ETag %s (parts %q), want multipart suffix %q", attrs.ETag, parts, c.wantETag)
			}
			got, err := b.ReadAll(ctx, key)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read back %d of %d bytes, equal %v, err %v", len(got), len(body), bytes.Equal(got, body), err)
			}
		})
	}
}
