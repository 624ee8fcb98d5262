package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestExportRetriesLostUpload: an S3 multipart upload aborted behind the
// run's back (a lifecycle rule, an operator's clean-up script) makes its
// next part or its completion fail with NoSuchUpload while the bucket is
// there. The run starts the upload again on its next attempt and succeeds:
// one complete object, no incomplete upload left, never "the bucket does
// not exist". Real MinIO; a bandwidth-limited proxy keeps the upload in
// flight until the abort has landed, then opens up.
//
// Two layers make that retry, and the test goes red only with both gone
// (checked): destination.Describe (the SDK's NoSuchUpload maps to
// gcerrors.Unknown: transient), and behind it the runner's 404 rule
// (notFoundCode, then the bucket found accessible). The rule's other
// case, what maps to gcerrors.NotFound (a lost GCS resumable session), is
// TestExportRetriesLostGCSSession.
func TestExportRetriesLostUpload(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	minio := testenv.StartMinIO(t)
	minio.CreateBucket(t, "lost")
	proxy, endpoint := sfProxied(t, minio.Endpoint)
	s := StartServer(t, "sqlite", "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(100_000) // ~40 MB of CSV
	e.integration("lost", "PROVIDER_S3", "s3://lost/exports/", endpoint, xfS3Creds(minio, minio.SecretKey))
	schID, _ := e.schedule("lost", "s3://lost/exports/l-{run_id}.csv", "COMPRESSION_NONE")

	proxy.SetBandwidth(6 << 20)
	xs := e.sendNow(schID)
	xs.Until("a multipart upload in flight", 90*time.Second, func(p *pb.ExportProgress) bool {
		return p.GetPhase() == pb.ExportPhase_EXPORT_PHASE_UPLOADING && p.GetBytesUploaded() > xfMultipartAt
	})
	key := xfS3Key(t, e.getRun(xs.RunID()).GetObjectUri(), "lost")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ups *s3.ListMultipartUploadsOutput
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if ups, err = minio.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("lost"), Prefix: aws.String(key)}); err != nil {
			t.Fatalf("list multipart uploads: %v", err)
		}
		if len(ups.Uploads) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(ups.Uploads) != 1 {
		t.Fatalf("%d multipart uploads of %s in flight, want 1", len(ups.Uploads), key)
	}
	if _, err := minio.Client().AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("lost"),
		Key: aws.String(key), UploadId: ups.Uploads[0].UploadId}); err != nil {
		t.Fatalf("aborting the run's multipart upload: %v", err)
	}
	t.Logf("aborted upload %s of %s", aws.ToString(ups.Uploads[0].UploadId), key)
	proxy.SetBandwidth(0)

	end := xs.Terminal(120 * time.Second)
	run := e.getRun(xs.RunID())
	if run.GetState() != pb.RunState_RUN_STATE_SUCCEEDED || end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Fatalf("run %v (stream %v) after its upload was lost, want SUCCEEDED on a later attempt: %v", run.GetState(), end.GetPhase(), run.GetError())
	}
	if run.GetAttempt() < 2 {
		t.Errorf("attempt %d: the lost upload was not started again", run.GetAttempt())
	}
	if run.GetRows() < 100_000 {
		t.Errorf("run exported %d rows, want at least the 100000 seeded", run.GetRows())
	}
	xfOnlyObject(t, minio, "lost", "exports/", key, run)
	xfNoUploadsLeft(t, minio, "lost", "exports/", key)
}
