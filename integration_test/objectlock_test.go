package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/grpc/codes"

	"github.com/auditexport/auditexport/clients/go/manifest"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestObjectLock: an S3 integration with Object Lock puts every export and
// its manifest under retention on a MinIO bucket created with Object Lock;
// the bucket owner's own credentials can then neither delete the object
// version nor replace its bytes before the retention ends. The integration
// Test refuses a bucket without Object Lock (failed step OBJECT_LOCK), and
// other providers are refused at creation naming the field.
func TestObjectLock(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite", "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	mc := testenv.StartMinIO(t)
	mc.CreateLockedBucket(t, "worm")
	mc.CreateBucket(t, "plain")
	lockJSON := `"objectLock":{"mode":"OBJECT_LOCK_MODE_GOVERNANCE","retainDays":1}`
	mk := func(name, dest string) string {
		b := e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":"PROVIDER_S3","destination":%q,
			"endpoint":%q,"region":"us-east-1","credentials":%s,%s}}`, name, dest, mc.Endpoint, xfS3Creds(mc, mc.SecretKey), lockJSON))
		return getString(b, "storageIntegration", "id")
	}
	worm, plain := mk("worm_s3", "s3://worm/a/"), mk("plain_s3", "s3://plain/a/")
	if got := getString(e.must("GetStorageIntegration", fmt.Sprintf(`{"id":%q}`, worm)), "storageIntegration", "objectLock", "mode"); got != "OBJECT_LOCK_MODE_GOVERNANCE" {
		t.Errorf("GetStorageIntegration objectLock.mode = %q", got)
	}
	if r := e.must("TestStorageIntegration", fmt.Sprintf(`{"id":%q}`, worm)); r["ok"] != true {
		t.Errorf("Test of the Object Lock bucket: %v", r)
	}
	r := e.must("TestStorageIntegration", fmt.Sprintf(`{"id":%q}`, plain))
	if r["ok"] == true || r["failedStep"] != "OBJECT_LOCK" {
		t.Errorf("Test of a bucket without Object Lock: %v, want ok=false at OBJECT_LOCK", r)
	}
	for _, tr := range transports(s) {
		for _, c := range []struct{ req, field string }{
			{fmt.Sprintf(`{"storageIntegration":{"name":"gcs_lock","provider":"PROVIDER_GCS","destination":"gcs://b/p/","credentials":{"gcsServiceAccount":{"jsonKey":%q}},%s}}`, serviceAccountJSON, lockJSON), "storage_integration.object_lock"},
			{fmt.Sprintf(`{"storageIntegration":{"name":"s3_lock0","provider":"PROVIDER_S3","destination":"s3://worm/b/","endpoint":%q,"credentials":%s,"objectLock":{"mode":"OBJECT_LOCK_MODE_COMPLIANCE"}}}`, mc.Endpoint, xfS3Creds(mc, mc.SecretKey)), "storage_integration.object_lock.retain_days"},
			{fmt.Sprintf(`{"storageIntegration":{"name":"s3_lockm","provider":"PROVIDER_S3","destination":"s3://worm/b/","endpoint":%q,"credentials":%s,"objectLock":{"retainDays":3}}}`, mc.Endpoint, xfS3Creds(mc, mc.SecretKey)), "storage_integration.object_lock.mode"},
		} {
			res := tr.Call(t, "CreateStorageIntegration", s.AdminKey, c.req, "")
			if res.Code != codes.InvalidArgument || !slices.Contains(res.Violations, c.field) {
				t.Errorf("%s: %v %q %v, want INVALID_ARGUMENT naming %s", tr.Name(), res.Code, res.Message, res.Violations, c.field)
			}
		}
	}

	schID, _ := e.schedule("worm_s3", "s3://worm/a/audit-{run_id}.csv", "COMPRESSION_NONE")
	end := e.sendNow(schID).End()
	if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Fatalf("Send now to the Object Lock bucket: %v", end)
	}
	key := xfS3Key(t, end.GetObjectUri(), "worm")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := mc.Client()
	for _, k := range []string{key, key + manifest.Suffix} {
		head, err := cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("worm"), Key: aws.String(k)})
		if err != nil {
			t.Fatalf("head %s: %v", k, err)
		}
		if head.ObjectLockMode != s3types.ObjectLockModeGovernance || head.ObjectLockRetainUntilDate == nil ||
			head.ObjectLockRetainUntilDate.Before(time.Now().Add(23*time.Hour)) {
			t.Errorf("%s: lock mode %q until %v, want GOVERNANCE for a day", k, head.ObjectLockMode, head.ObjectLockRetainUntilDate)
		}
		orig := readVersion(t, ctx, cl, k, aws.ToString(head.VersionId))
		// The bucket owner deletes the version: refused.
		if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("worm"), Key: aws.String(k), VersionId: head.VersionId}); err == nil {
			t.Errorf("deleting %s version %s under retention succeeded", k, aws.ToString(head.VersionId))
		}
		// Writing the key again makes a new version; the locked one keeps its bytes.
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("worm"), Key: aws.String(k), Body: strings.NewReader("forged")}); err != nil {
			t.Logf("overwrite %s: %v", k, err)
		}
		if got := readVersion(t, ctx, cl, k, aws.ToString(head.VersionId)); !bytes.Equal(got, orig) {
			t.Errorf("%s version %s changed after an overwrite", k, aws.ToString(head.VersionId))
		}
	}
}

func readVersion(t *testing.T, ctx context.Context, cl *s3.Client, key, version string) []byte {
	t.Helper()
	obj, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("worm"), Key: aws.String(key), VersionId: aws.String(version)})
	if err != nil {
		t.Fatalf("get %s version %s: %v", key, version, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatalf("%s version %s is empty", key, version)
	}
	return b
}
