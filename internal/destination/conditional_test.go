package destination_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"path/filepath"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestConditionalCreate: on every provider, against the real server, an
// upload with IfNotExist (what every export does) creates a missing
// object, and refuses — FailedPrecondition, the stored bytes untouched —
// when the key exists, for a single-request object and for one uploaded in
// parts (S3 multipart, Azure block list, GCS resumable chunks). The
// existence check the runner makes first answers false, then true.
func TestConditionalCreate(t *testing.T) {
	type target struct {
		name string
		open func(t *testing.T) destination.Integration
	}
	localRoot := t.TempDir()
	targets := []target{
		{"s3", func(t *testing.T) destination.Integration {
			m := testenv.StartMinIO(t)
			m.CreateBucket(t, "cond")
			return destination.Integration{Provider: destination.S3, Destination: "s3://cond/p/", Endpoint: m.Endpoint,
				Creds: destination.Credentials{Kind: "aws_access_key", AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey}}
		}},
		{"gcs", func(t *testing.T) destination.Integration {
			g := testenv.StartFakeGCS(t)
			g.CreateBucket(t, "cond")
			return destination.Integration{Provider: destination.GCS, Destination: "gs://cond/p/", Endpoint: g.Endpoint}
		}},
		{"azure", func(t *testing.T) destination.Integration {
			a := testenv.StartAzurite(t)
			a.CreateContainer(t, "cond")
			return destination.Integration{Provider: destination.AzureBlob, Endpoint: a.Endpoint,
				Destination: "azure://" + a.Account + ".blob.core.windows.net/cond/p/",
				Creds:       destination.Credentials{Kind: "azure_shared_key", AccountName: a.Account, AccountKey: a.Key}}
		}},
		{"local", func(t *testing.T) destination.Integration {
			return destination.Integration{Provider: destination.Local, OrgID: "org_cond",
				Destination: "file://" + filepath.Join(localRoot, "org_cond", "p") + "/"}
		}},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			in := tg.open(t)
			o := destination.OpenOptions{AllowPrivateEndpoints: true}
			if in.Provider == destination.Local {
				o.Local = destination.LocalDirs{Root: localRoot}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			b, base, err := destination.Open(ctx, in, o)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			prefix := base.Path
			if in.Provider == destination.Local {
				prefix = ""
			}
			for _, size := range []int{1 << 10, 20 << 20} {
				key := prefix + "obj-" + string(rune('a'+size%26)) + ".bin"
				first, second := make([]byte, size), make([]byte, size)
				_, _ = rand.Read(first)
				_, _ = rand.Read(second)
				opts := func() *blob.WriterOptions {
					return &blob.WriterOptions{IfNotExist: true, BufferSize: 5 << 20, ContentType: "application/octet-stream"}
				}
				if ok, err := b.Exists(ctx, key); err != nil || ok {
					t.Fatalf("%d bytes: Exists before the upload = %v, %v", size, ok, err)
				}
				// Streamed like an export (no Seek, no length): an object above
				// the S3 transfer manager's 16 MiB multipart threshold goes up
				// in parts and the condition is checked when they are
				// committed. (A body below it is one PUT, which MinIO may
				// refuse before reading it all: the client then sees a broken
				// pipe, not the 412 — seen with 12 MiB in a CI run; the
				// runner's existence check on the retry covers that.)
				if err := b.Upload(ctx, key, io.MultiReader(bytes.NewReader(first)), opts()); err != nil {
					t.Fatalf("%d bytes: first conditional upload: %v", size, err)
				}
				if ok, err := b.Exists(ctx, key); err != nil || !ok {
					t.Fatalf("%d bytes: Exists after the upload = %v, %v", size, ok, err)
				}
				err := b.Upload(ctx, key, io.MultiReader(bytes.NewReader(second)), opts())
				if gcerrors.Code(err) != gcerrors.FailedPrecondition {
					t.Fatalf("%d bytes: second conditional upload = %v (code %v), want FailedPrecondition", size, err, gcerrors.Code(err))
				}
				got, err := b.ReadAll(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, first) {
					t.Fatalf("%d bytes: the refused upload changed the object (%d bytes stored)", size, len(got))
				}
			}
		})
	}
}
