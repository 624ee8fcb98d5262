package integration_test

// Export failure modes against real servers on 127.0.0.1 (issue 3,
// acceptance items 3-5): wrong credentials, the S3 server dying mid-upload,
// CancelExportRun during a large export, and a server killed mid-run.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

const (
	xfAdminEmail  = "admin@example.com" // the bootstrap admin, owner of every schedule here
	xfNotifyEmail = "oncall@example.com"
	xfMultipartAt = 24 << 20 // bytes handed to the writer: beyond this a multipart upload is in flight
)

// xfEnv is a server plus the helpers these tests share.
type xfEnv struct {
	t *testing.T
	s *Server
}

func (e xfEnv) must(rpc, req string) map[string]any {
	e.t.Helper()
	r := grpcTransport{e.s}.Call(e.t, rpc, e.s.AdminKey, req, "")
	if r.Code != codes.OK {
		e.t.Fatalf("%s %s: %v %s", rpc, req, r.Code, r.Message)
	}
	return r.Body
}

// xfLogsOnFailure prints the tail of the server's log when the test failed
// (or always, with XF_LOGS=1 in the environment).
func xfLogsOnFailure(t *testing.T, s *Server) {
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("XF_LOGS") != "" {
			l := s.Logs()
			if len(l) > 20000 {
				l = l[len(l)-20000:]
			}
			t.Logf("%sserver log (tail):\n%s", testenv.RaceSummary(s.Logs()), l)
		}
	})
}

// integration creates a storage integration; creds is the JSON of the
// credentials oneof. It returns the integration id.
func (e xfEnv) integration(name, provider, dest, endpoint, creds string) string {
	e.t.Helper()
	b := e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":%q,
		"destination":%q,"endpoint":%q,"region":"us-east-1","credentials":%s}}`, name, provider, dest, endpoint, creds))
	return getString(b, "storageIntegration", "id")
}

func xfS3Creds(m *testenv.S3, secret string) string {
	return fmt.Sprintf(`{"awsAccessKey":{"accessKeyId":%q,"secretAccessKey":%q}}`, m.AccessKey, secret)
}

// schedule saves an AUDIT_LOGS workbook and schedules it to uri; it returns
// the schedule id and name.
func (e xfEnv) schedule(intName, uri, compression string) (string, string) {
	e.t.Helper()
	ex := e.must("ExploreTable", `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`)
	wb := getString(ex, "workbook", "id")
	el := getPath(ex, "workbook", "elements").([]any)[0].(map[string]any)["id"].(string)
	e.must("SaveWorkbookAs", fmt.Sprintf(`{"id":%q,"name":"wb-%s"}`, wb, intName))
	name := "sched-" + intName
	b := e.must("CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":%q,"elementId":%q,
		"format":"FORMAT_CSV","compression":%q,"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":%q}},
		"cron":"0 0 1 1 *","timeZone":"UTC","notifyEmails":[%q]}}`, wb, name, el, compression, intName, uri, xfNotifyEmail))
	return getString(b, "schedule", "id"), name
}

// seed appends n synthetic events to the server's default organization
// with the operator command built without -race (seedEvents): seeding in the
// race-instrumented test process ran at ~5k rows/s (2M rows: 6 minutes),
// the plain binary at ~60k rows/s.
func (e xfEnv) seed(n int) {
	e.t.Helper()
	seedEvents(e.t, e.s, n)
}

func (e xfEnv) getRun(id string) *pb.ExportRun {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(Ctx(e.s.AdminKey), 30*time.Second)
	defer cancel()
	r, err := pb.NewScheduleServiceClient(e.s.Conn).GetExportRun(ctx, &pb.GetExportRunRequest{Id: id})
	if err != nil {
		e.t.Fatalf("GetExportRun %s: %v", id, err)
	}
	return r.GetRun()
}

func (e xfEnv) cancelRun(id string) error {
	ctx, cancel := context.WithTimeout(Ctx(e.s.AdminKey), 30*time.Second)
	defer cancel()
	_, err := pb.NewScheduleServiceClient(e.s.Conn).CancelExportRun(ctx, &pb.CancelExportRunRequest{Id: id})
	return err
}

// sendNow starts a Send now as the admin and returns its stream once the
// first message (with the run id) has arrived.
func (e xfEnv) sendNow(schID string) *testenv.RunStream {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(Ctx(e.s.AdminKey), 3*time.Minute)
	e.t.Cleanup(cancel)
	xs := testenv.SendNow(e.t, ctx, pb.NewScheduleServiceClient(e.s.Conn), schID)
	xs.RunID() // the test fails if the stream ends before its first message
	return xs
}

// xfS3Key is the bucket key of an s3:// object URI.
func xfS3Key(t *testing.T, uri, bucket string) string {
	t.Helper()
	key, ok := strings.CutPrefix(uri, "s3://"+bucket+"/")
	if !ok {
		t.Fatalf("object uri %q is not in bucket %s", uri, bucket)
	}
	return key
}

// xfS3Objects lists the keys under prefix.
func xfS3Objects(t *testing.T, m *testenv.S3, bucket, prefix string) []string {
	t.Helper()
	return objectsOnly(xfS3Keys(t, m, bucket, prefix))
}

// xfS3Keys lists every key under prefix in bucket of m, manifests included.
func xfS3Keys(t *testing.T, m *testenv.S3, bucket, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := m.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list objects: %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// xfS3Uploads lists incomplete multipart uploads under each prefix (MinIO
// matches uploads of the exact object name, so pass object keys too).
func xfS3Uploads(t *testing.T, m *testenv.S3, bucket string, prefixes ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ups []string
	for _, p := range prefixes {
		out, err := m.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(p)})
		if err != nil {
			t.Fatalf("list multipart uploads: %v", err)
		}
		for _, u := range out.Uploads {
			if s := aws.ToString(u.Key) + " upload " + aws.ToString(u.UploadId); !slices.Contains(ups, s) {
				ups = append(ups, s)
			}
		}
	}
	return ups
}

// xfOnlyObject checks that key is the only object under prefix and holds
// the rows and bytes the succeeded run reports.
func xfOnlyObject(t *testing.T, m *testenv.S3, bucket, prefix, key string, run *pb.ExportRun) {
	t.Helper()
	if keys := xfS3Objects(t, m, bucket, prefix); !slices.Equal(keys, []string{key}) {
		t.Errorf("objects %v, want exactly [%s]", keys, key)
	}
	rows, size := xfReadCSV(t, m, bucket, key)
	if rows != run.GetRows() || size != run.GetBytes() {
		t.Errorf("object has %d rows / %d bytes, the run says %d / %d", rows, size, run.GetRows(), run.GetBytes())
	}
}

// xfNoUploadsLeft waits a little for aborts to land, then fails if any
// incomplete multipart upload remains.
func xfNoUploadsLeft(t *testing.T, m *testenv.S3, bucket string, prefixes ...string) {
	t.Helper()
	var ups []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if ups = xfS3Uploads(t, m, bucket, prefixes...); len(ups) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(ups) > 0 {
		t.Errorf("incomplete multipart uploads remain in %s: %v", bucket, ups)
	}
}

// xfFailureMail waits for the failure mail of run and checks recipients and
// content.
func xfFailureMail(t *testing.T, mp *testenv.Mailpit, runID string, want ...string) testenv.Message {
	t.Helper()
	msg := mp.WaitFor(t, func(m testenv.Message) bool { return strings.Contains(m.Text, runID) }, 30*time.Second)
	for _, to := range []string{xfAdminEmail, xfNotifyEmail} {
		if !slices.Contains(msg.To, to) {
			t.Errorf("failure mail of %s not sent to %s: to=%v", runID, to, msg.To)
		}
	}
	for _, w := range want {
		if !strings.Contains(msg.Text, w) && !strings.Contains(msg.Subject, w) {
			t.Errorf("failure mail of %s lacks %q:\nSubject: %s\n%s", runID, w, msg.Subject, msg.Text)
		}
	}
	return msg
}

// xfCheckProviderError checks a FAILED run's error in both the terminal
// progress and GetExportRun.
func xfCheckProviderError(t *testing.T, where string, e *pb.ExportError, code string, texts ...string) {
	t.Helper()
	if e.GetCode() != code {
		t.Errorf("%s: error code %q, want %q (%v)", where, e.GetCode(), code, e)
	}
	for _, s := range texts {
		if !strings.Contains(e.GetProviderMessage(), s) {
			t.Errorf("%s: provider_message %q lacks %q", where, e.GetProviderMessage(), s)
		}
	}
}

// TestExportWrongCredentials: a provider refusing the credentials fails the
// run with its own words, mails the owner and notify_emails, and leaves
// nothing behind; TestStorageIntegration reports the same refusal.
func TestExportWrongCredentials(t *testing.T) {
	t.Parallel()
	mp := testenv.StartMailpit(t)
	minio := testenv.StartMinIO(t)
	azurite := testenv.StartAzurite(t)
	s := StartServer(t, "sqlite", "--smtp-url", mp.SMTPURL, "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	integ := pb.NewIntegrationServiceClient(s.Conn)
	probe := func(t *testing.T, id string) *pb.TestStorageIntegrationResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), time.Minute)
		defer cancel()
		r, err := integ.TestStorageIntegration(ctx, &pb.TestStorageIntegrationRequest{Id: id})
		if err != nil {
			t.Errorf("TestStorageIntegration %s: %v", id, err)
			return &pb.TestStorageIntegrationResponse{}
		}
		return r
	}
	// Enough rows that a correct upload would be multipart (> one 8 MiB part).
	e.seed(30_000)

	t.Run("s3", func(t *testing.T) {
		e := xfEnv{t, s}
		minio.CreateBucket(t, "wrongcreds")
		bad := e.integration("s3bad", "PROVIDER_S3", "s3://wrongcreds/exports/", minio.Endpoint, xfS3Creds(minio, "not-the-secret-key"))
		good := e.integration("s3good", "PROVIDER_S3", "s3://wrongcreds/exports/", minio.Endpoint, xfS3Creds(minio, minio.SecretKey))
		schID, schName := e.schedule("s3bad", "s3://wrongcreds/exports/x-{run_id}.csv", "COMPRESSION_NONE")
		xs := e.sendNow(schID)
		end := xs.Terminal(60 * time.Second)
		if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED {
			t.Fatalf("terminal phase %v, want FAILED: %v", end.GetPhase(), end)
		}
		want := []string{"SignatureDoesNotMatch", "The request signature we calculated does not match"}
		xfCheckProviderError(t, "terminal progress", end.GetError(), "PROVIDER_ACCESS_DENIED", want...)
		run := e.getRun(xs.RunID())
		if run.GetState() != pb.RunState_RUN_STATE_FAILED || run.GetFinishTime() == nil {
			t.Errorf("GetExportRun: %v", run)
		}
		// The preflight (does the key exist?) is refused before a row is read.
		if end.GetRowsExported() != 0 || run.GetRows() != 0 || run.GetAttempt() != 1 {
			t.Errorf("%d rows exported (run: %d, attempt %d) before the refusal; want the preflight to fail first", end.GetRowsExported(), run.GetRows(), run.GetAttempt())
		}
		xfCheckProviderError(t, "GetExportRun", run.GetError(), "PROVIDER_ACCESS_DENIED", want...)
		if run.GetError().GetProviderMessage() != end.GetError().GetProviderMessage() {
			t.Errorf("provider message differs: run %q, stream %q", run.GetError().GetProviderMessage(), end.GetError().GetProviderMessage())
		}
		xfFailureMail(t, mp, xs.RunID(), append(want, schName, schID)...)
		if keys := xfS3Objects(t, minio, "wrongcreds", "exports/"); len(keys) > 0 {
			t.Errorf("objects after the failed run: %v", keys)
		}
		xfNoUploadsLeft(t, minio, "wrongcreds", "exports/", xfS3Key(t, run.GetObjectUri(), "wrongcreds"))

		// TestStorageIntegration: the provider's refusal, verbatim; then the
		// right credentials pass and leave no probe object.
		r := probe(t, bad)
		if r.GetOk() || r.GetProviderCode() != "SignatureDoesNotMatch" || !strings.Contains(r.GetProviderMessage(), want[1]) || r.GetFailedStep() == "" {
			t.Errorf("TestStorageIntegration with a wrong secret: %v", r)
		}
		if r = probe(t, good); !r.GetOk() || r.GetProviderCode() != "" {
			t.Errorf("TestStorageIntegration with the right secret: %v", r)
		}
		if keys := xfS3Objects(t, minio, "wrongcreds", ""); len(keys) > 0 {
			t.Errorf("objects left after the probes: %v", keys)
		}
	})

	t.Run("azure", func(t *testing.T) {
		e := xfEnv{t, s}
		azurite.CreateContainer(t, "wrongcreds")
		dest := "azure://" + testenv.AzuriteAccount + ".blob.core.windows.net/wrongcreds/exports/"
		wrongKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("wrong-key"), 7))
		creds := `{"azureSharedKey":{"accountName":%q,"accountKey":%q}}`
		bad := e.integration("azbad", "PROVIDER_AZURE_BLOB", dest, azurite.Endpoint, fmt.Sprintf(creds, testenv.AzuriteAccount, wrongKey))
		good := e.integration("azgood", "PROVIDER_AZURE_BLOB", dest, azurite.Endpoint, fmt.Sprintf(creds, testenv.AzuriteAccount, testenv.AzuriteKey))
		schID, schName := e.schedule("azbad", dest+"x-{run_id}.csv.gz", "COMPRESSION_GZIP")
		xs := e.sendNow(schID)
		end := xs.Terminal(60 * time.Second)
		if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED {
			t.Fatalf("terminal phase %v, want FAILED: %v", end.GetPhase(), end)
		}
		// Azure answers AuthenticationFailed, Azurite AuthorizationFailure;
		// both with this message.
		want := []string{"Server failed to authenticate the request"}
		if pm := end.GetError().GetProviderMessage(); !strings.HasPrefix(pm, "AuthenticationFailed: ") && !strings.HasPrefix(pm, "AuthorizationFailure: ") {
			t.Errorf("provider_message %q does not start with Azure's error code", pm)
		}
		xfCheckProviderError(t, "terminal progress", end.GetError(), "PROVIDER_ACCESS_DENIED", want...)
		run := e.getRun(xs.RunID())
		if run.GetState() != pb.RunState_RUN_STATE_FAILED {
			t.Errorf("GetExportRun: %v", run)
		}
		if end.GetRowsExported() != 0 || run.GetRows() != 0 {
			t.Errorf("%d rows exported (run: %d) before the refusal; want the preflight to fail first", end.GetRowsExported(), run.GetRows())
		}
		xfCheckProviderError(t, "GetExportRun", run.GetError(), "PROVIDER_ACCESS_DENIED", want...)
		xfFailureMail(t, mp, xs.RunID(), append(want, schName, schID)...)
		r := probe(t, bad)
		if c := r.GetProviderCode(); r.GetOk() || c != "AuthenticationFailed" && c != "AuthorizationFailure" || !strings.Contains(r.GetProviderMessage(), want[0]) {
			t.Errorf("TestStorageIntegration with a wrong key: %v", r)
		}
		if r = probe(t, good); !r.GetOk() {
			t.Errorf("TestStorageIntegration with the right key: %v", r)
		}
		// No blob, committed or with uncommitted blocks only, from the run or
		// the probes.
		cc := azurite.ServiceClient(t).NewContainerClient("wrongcreds")
		pager := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{UncommittedBlobs: true}})
		for pager.More() {
			pg, err := pager.NextPage(context.Background())
			if err != nil {
				t.Fatalf("list blobs: %v", err)
			}
			for _, b := range pg.Segment.BlobItems {
				t.Errorf("blob left behind: %s", aws.ToString(b.Name))
			}
		}
	})
}

// xfReadCSV reads an object back with the S3 SDK and counts its CSV records
// (header excluded) with encoding/csv.
func xfReadCSV(t *testing.T, m *testenv.S3, bucket, key string) (rows, size int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	obj, err := m.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	cs := csv.NewReader(obj.Body)
	cs.ReuseRecord = true
	for ; ; rows++ {
		if _, err := cs.Read(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: CSV record %d: %v", key, rows, err)
		}
	}
	return rows - 1, aws.ToInt64(obj.ContentLength)
}

// TestExportSurvivesS3Restart: MinIO is killed mid-upload and restored. The
// run retries and succeeds, or fails cleanly with a mail; it never stays
// RUNNING, and never leaves a partial object or an incomplete upload.
func TestExportSurvivesS3Restart(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	mp := testenv.StartMailpit(t)
	minio := testenv.StartMinIO(t)
	minio.CreateBucket(t, "restart")
	s := StartServer(t, "sqlite", "--smtp-url", mp.SMTPURL, "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(150_000) // ~60 MB of CSV: ~10 s of export with the -race server
	e.integration("restart", "PROVIDER_S3", "s3://restart/exports/", minio.Endpoint, xfS3Creds(minio, minio.SecretKey))
	schID, _ := e.schedule("restart", "s3://restart/exports/r-{run_id}.csv", "COMPRESSION_NONE")

	start := time.Now()
	xs := e.sendNow(schID)
	at := xs.Until("a multipart upload in flight", 90*time.Second, func(p *pb.ExportProgress) bool {
		return p.GetPhase() == pb.ExportPhase_EXPORT_PHASE_UPLOADING && p.GetBytesUploaded() > xfMultipartAt
	})
	t.Logf("killing MinIO %s into the run at %d bytes / %d rows", time.Since(start).Round(time.Millisecond), at.GetBytesUploaded(), at.GetRowsExported())
	minio.Stop()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		restarted <- minio.TryStart()
	}()
	end := xs.Terminal(150 * time.Second)
	if err := <-restarted; err != nil {
		t.Fatalf("restarting MinIO: %v", err)
	}
	t.Logf("run ended %v after %s", end.GetPhase(), time.Since(start).Round(time.Millisecond))
	run := e.getRun(xs.RunID())
	key := xfS3Key(t, run.GetObjectUri(), "restart")
	switch run.GetState() {
	case pb.RunState_RUN_STATE_SUCCEEDED:
		t.Logf("succeeded on attempt %d: %d rows, %d bytes", run.GetAttempt(), run.GetRows(), run.GetBytes())
		if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
			t.Errorf("stream says %v, run says SUCCEEDED", end.GetPhase())
		}
		if run.GetRows() < 150_000 || run.GetBytes() == 0 || run.GetChecksum() == "" {
			t.Errorf("succeeded run: %v", run)
		}
		if run.GetAttempt() < 2 {
			// Possible when the SDK's own retries outlast the outage.
			t.Logf("note: the upload survived within attempt %d (SDK-level retries)", run.GetAttempt())
		}
		xfOnlyObject(t, minio, "restart", "exports/", key, run)
	case pb.RunState_RUN_STATE_FAILED:
		t.Logf("failed cleanly: %v", run.GetError())
		if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || run.GetError().GetCode() == "" {
			t.Errorf("failed run: stream %v, error %v", end, run.GetError())
		}
		xfFailureMail(t, mp, xs.RunID())
		if keys := xfS3Objects(t, minio, "restart", "exports/"); len(keys) > 0 {
			t.Errorf("objects after the failed run: %v", keys)
		}
	default:
		t.Fatalf("run state %v after its terminal message %v", run.GetState(), end)
	}
	xfNoUploadsLeft(t, minio, "restart", "exports/", key)
}

// TestCancelLargeExport: CancelExportRun during a 2M-row export stops it
// within 5 s and leaves no object: once right after the first UPLOADING
// message (the first batch of the query is still running), once with a
// multipart upload in flight (which must be aborted).
func TestCancelLargeExport(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	minio := testenv.StartMinIO(t)
	minio.CreateBucket(t, "cancel")
	s := StartServer(t, "sqlite", "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(2_000_000)
	e.integration("cancel", "PROVIDER_S3", "s3://cancel/exports/", minio.Endpoint, xfS3Creds(minio, minio.SecretKey))
	schID, _ := e.schedule("cancel", "s3://cancel/exports/c-{run_id}.csv", "COMPRESSION_NONE")

	for _, c := range []struct {
		name string
		when func(*pb.ExportProgress) bool
	}{
		{"first UPLOADING message", func(p *pb.ExportProgress) bool { return p.GetPhase() == pb.ExportPhase_EXPORT_PHASE_UPLOADING }},
		{"multipart upload in flight", func(p *pb.ExportProgress) bool { return p.GetBytesUploaded() > xfMultipartAt }},
	} {
		xs := e.sendNow(schID)
		at := xs.Until(c.name, 120*time.Second, c.when)
		canceled := time.Now()
		if err := e.cancelRun(xs.RunID()); err != nil {
			t.Fatalf("CancelExportRun: %v", err)
		}
		end := xs.Terminal(60 * time.Second)
		took := time.Since(canceled)
		t.Logf("%s: canceled at %d/%d rows, %d bytes; terminal %v %s after the cancel call",
			c.name, at.GetRowsExported(), at.GetTotalRows(), at.GetBytesUploaded(), end.GetPhase(), took.Round(time.Millisecond))
		if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_CANCELED {
			t.Errorf("%s: terminal phase %v, want CANCELED: %v", c.name, end.GetPhase(), end)
		}
		if took > 5*time.Second {
			t.Errorf("%s: run stopped %s after CancelExportRun, want <= 5s", c.name, took)
		}
		if at.GetTotalRows() < 2_000_000 {
			t.Errorf("%s: total_rows %d, want >= 2M", c.name, at.GetTotalRows())
		}
		run := e.getRun(xs.RunID())
		if run.GetState() != pb.RunState_RUN_STATE_CANCELED || run.GetFinishTime() == nil || run.GetError().GetCode() != "CANCELED" {
			t.Errorf("%s: GetExportRun after cancel: %v", c.name, run)
		}
		key := xfS3Key(t, run.GetObjectUri(), "cancel")
		if keys := xfS3Objects(t, minio, "cancel", "exports/"); len(keys) > 0 {
			t.Errorf("%s: objects after cancel: %v", c.name, keys)
		}
		xfNoUploadsLeft(t, minio, "cancel", "exports/", key)
		if err := e.cancelRun(xs.RunID()); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("%s: CancelExportRun on a finished run: %v, want FailedPrecondition", c.name, err)
		}
	}
}

// xfKillRestart SIGKILLs the server (a crash: no drain, no abort) and starts
// it again on the same storage.
func xfKillRestart(s *Server) {
	s.t.Helper()
	s.Kill()
	s.start()
}

// TestOrphanedRunRecovered: a run whose server was SIGKILLed mid-upload is
// marked FAILED (INTERRUPTED) at restart and left no object.
func TestOrphanedRunRecovered(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	minio := testenv.StartMinIO(t)
	minio.CreateBucket(t, "orphan")
	s := StartServer(t, "sqlite", "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(100_000)
	e.integration("orphan", "PROVIDER_S3", "s3://orphan/exports/", minio.Endpoint, xfS3Creds(minio, minio.SecretKey))
	schID, _ := e.schedule("orphan", "s3://orphan/exports/o-{run_id}.csv", "COMPRESSION_NONE")

	xs := e.sendNow(schID)
	xs.Until("a multipart upload in flight", 60*time.Second, func(p *pb.ExportProgress) bool {
		return p.GetPhase() == pb.ExportPhase_EXPORT_PHASE_UPLOADING && p.GetBytesUploaded() > xfMultipartAt
	})
	xfKillRestart(s)
	run := e.getRun(xs.RunID())
	if run.GetState() != pb.RunState_RUN_STATE_FAILED || run.GetError().GetCode() != "INTERRUPTED" || run.GetFinishTime() == nil {
		t.Fatalf("run after a crash and restart: %v", run)
	}
	key := xfS3Key(t, run.GetObjectUri(), "orphan")
	if keys := xfS3Objects(t, minio, "orphan", "exports/"); len(keys) > 0 {
		t.Errorf("objects after the crashed run: %v", keys)
	}
	xfNoUploadsLeft(t, minio, "orphan", "exports/", key)
	// Watching the recovered run ends at once with its terminal state.
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 10*time.Second)
	defer cancel()
	w, err := pb.NewScheduleServiceClient(s.Conn).WatchExportRun(ctx, &pb.WatchExportRunRequest{Id: xs.RunID()})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetProgress().GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED {
		t.Errorf("WatchExportRun of the recovered run: %v %v", m, err)
	}
}

// TestExportBucketGone: the bucket of an S3 integration is deleted after
// the schedule was made. The run fails at once (one attempt: a missing
// bucket is not retried) with PROVIDER_BUCKET_NOT_FOUND and the provider's
// own words. (A 404 while the bucket is there — a lost multipart upload or
// resumable session — is retried instead: the runner asks the store
// whether the bucket is accessible before it calls a 404 final.)
func TestExportBucketGone(t *testing.T) {
	t.Parallel()
	m := testenv.StartMinIO(t)
	s := StartServer(t, "sqlite", "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(20)
	m.CreateBucket(t, "gone")
	e.integration("gone", "PROVIDER_S3", "s3://gone/p/", m.Endpoint, xfS3Creds(m, m.SecretKey))
	id, _ := e.schedule("gone", "s3://gone/p/{run_id}.csv", "COMPRESSION_NONE")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Client().DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("gone")}); err != nil {
		t.Fatal(err)
	}
	xs := e.sendNow(id)
	end := xs.Terminal(60 * time.Second)
	run := e.getRun(xs.RunID())
	if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || run.GetState() != pb.RunState_RUN_STATE_FAILED {
		t.Fatalf("run to a deleted bucket: stream %v, run %v", end, run)
	}
	xfCheckProviderError(t, "GetExportRun", run.GetError(), "PROVIDER_BUCKET_NOT_FOUND", "NoSuchBucket")
	if run.GetAttempt() != 1 {
		t.Errorf("attempt %d, want 1: a missing bucket is not retried", run.GetAttempt())
	}
}
