package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"
	"gocloud.dev/gcp"
	"google.golang.org/api/option"

	"github.com/auditexport/auditexport/internal/testenv"
)

// The wiring below (open*Bucket) is exactly what production code should do
// with per-integration settings: no environment variables, no default
// credential chains.

func openS3Bucket(t *testing.T, ctx context.Context, endpoint, region, accessKey, secretKey, bucket string) *blob.Bucket {
	t.Helper()
	client := s3.New(s3.Options{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		BaseEndpoint: aws.String(endpoint), // http://127.0.0.1:port for MinIO; unset for AWS
		UsePathStyle: true,                 // MinIO and most S3-compatibles
	})
	b, err := s3blob.OpenBucket(ctx, client, bucket, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openGCSBucket(t *testing.T, ctx context.Context, endpoint, bucket string) *blob.Bucket {
	t.Helper()
	// Emulator: anonymous client plus an endpoint override through
	// ClientOptions (no STORAGE_EMULATOR_HOST needed, so it is per bucket).
	// Production: gcp.NewHTTPClient(gcp.DefaultTransport(), gcp.CredentialsTokenSource(creds))
	// and no ClientOptions.
	client := gcp.NewAnonymousHTTPClient(gcp.DefaultTransport())
	b, err := gcsblob.OpenBucket(ctx, client, bucket, &gcsblob.Options{
		ClientOptions: []option.ClientOption{
			option.WithEndpoint(endpoint + "/storage/v1/"),
			option.WithoutAuthentication(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openAzureBucket(t *testing.T, ctx context.Context, serviceURL, account, key, containerName string) *blob.Bucket {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		t.Fatal(err)
	}
	// serviceURL: http://127.0.0.1:port/devstoreaccount1 for Azurite,
	// https://<account>.blob.core.windows.net for Azure.
	cc, err := container.NewClientWithSharedKeyCredential(strings.TrimSuffix(serviceURL, "/")+"/"+containerName, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := azureblob.OpenBucket(ctx, cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip writes, reads, lists and deletes objects through gocloud.
func roundTrip(t *testing.T, ctx context.Context, b *blob.Bucket) {
	t.Helper()
	payload := bytes.Repeat([]byte("audit,row\n"), 100_000) // ~1 MB: more than one upload part
	keys := []string{"exports/2024/01/a.csv", "exports/2024/01/b.csv", "other/c.csv"}
	for _, k := range keys {
		w, err := b.NewWriter(ctx, k, &blob.WriterOptions{ContentType: "text/csv"})
		if err != nil {
			t.Fatalf("NewWriter %s: %v", k, err)
		}
		if _, err := w.Write(payload); err != nil {
			t.Fatalf("Write %s: %v", k, err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("Close writer %s: %v", k, err)
		}
	}
	got, err := b.ReadAll(ctx, keys[0])
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(payload))
	}
	attrs, err := b.Attributes(ctx, keys[0])
	if err != nil {
		t.Fatalf("Attributes: %v", err)
	}
	if attrs.Size != int64(len(payload)) || attrs.ContentType != "text/csv" {
		t.Fatalf("attributes: size %d type %q", attrs.Size, attrs.ContentType)
	}

	var listed []string
	it := b.List(&blob.ListOptions{Prefix: "exports/"})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		listed = append(listed, obj.Key)
	}
	if strings.Join(listed, ",") != "exports/2024/01/a.csv,exports/2024/01/b.csv" {
		t.Fatalf("listed %v", listed)
	}

	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil {
			t.Fatalf("Delete %s: %v", k, err)
		}
	}
	if _, err := b.ReadAll(ctx, keys[0]); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("after delete: %v, want NotFound", err)
	}
}

func TestMinIORoundTripAndRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := testenv.StartMinIO(t)
	srv.CreateBucket(t, "exports")
	b := openS3Bucket(t, ctx, srv.Endpoint, srv.Region, srv.AccessKey, srv.SecretKey, "exports")
	defer b.Close()
	roundTrip(t, ctx, b)

	// Crash and restore: the data and the endpoint survive.
	if err := b.WriteAll(ctx, "survivor.txt", []byte("still here"), nil); err != nil {
		t.Fatal(err)
	}
	endpoint := srv.Endpoint
	srv.Stop()
	if _, err := b.ReadAll(ctx, "survivor.txt"); err == nil {
		t.Fatal("read succeeded while MinIO was down")
	}
	srv.Start()
	if srv.Endpoint != endpoint {
		t.Fatalf("endpoint changed: %s -> %s", endpoint, srv.Endpoint)
	}
	got, err := b.ReadAll(ctx, "survivor.txt") // the same client, the same endpoint
	if err != nil || string(got) != "still here" {
		t.Fatalf("after restart: %q, %v", got, err)
	}
}

func TestFakeGCSRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := testenv.StartFakeGCS(t)
	srv.CreateBucket(t, "exports")
	b := openGCSBucket(t, ctx, srv.Endpoint, "exports")
	defer b.Close()
	roundTrip(t, ctx, b)
}

func TestAzuriteRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := testenv.StartAzurite(t)
	srv.CreateContainer(t, "exports")
	b := openAzureBucket(t, ctx, srv.Endpoint, srv.Account, srv.Key, "exports")
	defer b.Close()
	roundTrip(t, ctx, b)
}

func TestMailpitRoundTrip(t *testing.T) {
	t.Parallel()
	srv := testenv.StartMailpit(t)
	auth := smtp.PlainAuth("", "user", "pass", "127.0.0.1") // any credentials are accepted
	msg := "From: exports@example.test\r\n" +
		"To: ops@example.test\r\n" +
		"Subject: Export ready\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Your export run 42 finished.\r\n"
	if err := smtp.SendMail(srv.SMTPAddr, auth, "exports@example.test", []string{"ops@example.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := srv.WaitFor(t, func(m testenv.Message) bool { return m.Subject == "Export ready" }, 10*time.Second)
	if len(got.To) != 1 || got.To[0] != "ops@example.test" || got.From != "exports@example.test" {
		t.Fatalf("addresses: from %q to %v", got.From, got.To)
	}
	if !strings.Contains(got.Text, "export run 42 finished") {
		t.Fatalf("text %q", got.Text)
	}
	if n := len(srv.Messages(t)); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestDuckDBReadsCSV(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rows.csv")
	csv := "id,actor,at\n1,alice,2024-01-02T03:04:05Z\n2,\"bob, jr\",2024-01-03T00:00:00Z\n"
	if err := os.WriteFile(path, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	res := testenv.DuckDBQueryResult(t, fmt.Sprintf("SELECT id, actor, \"at\" FROM read_csv('%s', header=true) ORDER BY id", path))
	if strings.Join(res.Columns, ",") != "id,actor,at" {
		t.Fatalf("columns %v", res.Columns)
	}
	if res.Types[0] != "BIGINT" {
		t.Fatalf("types %v", res.Types)
	}
	rows := res.Rows
	if len(rows) != 2 || rows[0]["id"] != float64(1) || rows[1]["actor"] != "bob, jr" {
		t.Fatalf("rows %v", rows)
	}

	// Parquet written by DuckDB and read back: the reader handles Parquet too.
	pq := filepath.Join(t.TempDir(), "rows.parquet")
	n := testenv.DuckDBQuery(t, fmt.Sprintf(
		"COPY (SELECT * FROM read_csv('%s')) TO '%s' (FORMAT parquet); SELECT count(*) AS n FROM read_parquet('%s')", path, pq, pq))
	if n[0]["n"] != float64(2) {
		t.Fatalf("parquet count %v", n)
	}
}
