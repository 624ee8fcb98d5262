package integration_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestAWSRoleIntegration: an S3 integration with aws_role credentials is
// tested and exported through by the server assuming the role with its own
// AWS identity (the server process's environment) at MinIO's STS endpoint.
// The API never sees the server's secret, and neither do the logs.
func TestAWSRoleIntegration(t *testing.T) {
	t.Parallel()
	minio := testenv.StartMinIO(t)
	minio.WaitSTS(t)
	minio.CreateBucket(t, "role")
	// The server's environment: its own AWS identity.
	s := StartServerEnv(t, "sqlite", []string{
		"AWS_ACCESS_KEY_ID=" + minio.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + minio.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_EC2_METADATA_DISABLED=true",
	})
	xfLogsOnFailure(t, s)
	ctx := Ctx(s.AdminKey)
	cl := s.Clients()

	in := must(cl.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{StorageIntegration: &pb.StorageIntegration{
		Name: "role", Provider: pb.Provider_PROVIDER_S3, Destination: "s3://role/audit/", Region: minio.Region, Endpoint: minio.Endpoint,
		Credentials: &pb.StorageCredentials{Kind: &pb.StorageCredentials_AwsRole{
			AwsRole: &pb.AwsRole{RoleArn: "arn:aws:iam::123456789012:role/auditexport"}}},
	}})).get(t).GetStorageIntegration()

	probe := must(cl.Integrations.TestStorageIntegration(ctx, &pb.TestStorageIntegrationRequest{Id: in.GetId()})).get(t)
	if !probe.GetOk() {
		t.Fatalf("TestStorageIntegration with aws_role: %v", probe)
	}
	creds := must(cl.Integrations.GetStorageIntegrationCredentials(ctx, &pb.GetStorageIntegrationCredentialsRequest{Id: in.GetId()})).get(t)
	if creds.String() == "" || strings.Contains(creds.String(), minio.SecretKey) {
		t.Fatalf("credentials view: %v", creds)
	}

	wbID, elID := savedElement(t, ctx, cl, time.Time{})
	schID := createSchedule(t, ctx, cl, wbID, elID, "role", "s3://role/audit/{run_id}.csv", pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_NONE, nil)
	last := checkStream(t, "aws_role", sendNow(t, ctx, cl, schID), 1)
	key := strings.TrimPrefix(last.GetObjectUri(), "s3://role/")
	out := must(minio.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("role"), Key: aws.String(key)})).get(t)
	body := slurp(t, out.Body, nil)
	if !strings.HasPrefix(string(body), "EVENT_ID,") {
		t.Errorf("exported object %s does not start with the CSV header: %.80q", key, body)
	}
	if strings.Contains(s.Logs(), minio.SecretKey) {
		t.Error("the server's own AWS secret appears in its logs")
	}
}
