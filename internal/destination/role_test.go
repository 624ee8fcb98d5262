package destination_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestAWSRoleAgainstMinIO: an aws_role integration uses the server
// process's own AWS identity (here from the environment) to assume the
// role through STS — MinIO serves STS on its S3 endpoint — and writes with
// the temporary credentials. With a wrong own secret the provider's STS
// error comes back, not a silent anonymous request.
func TestAWSRoleAgainstMinIO(t *testing.T) {
	srv := testenv.StartMinIO(t)
	srv.WaitSTS(t)
	srv.CreateBucket(t, "role-bucket")
	// Only the environment: no shared files of the host, no instance metadata.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")

	in := destination.Integration{
		Provider: destination.S3, Destination: "s3://role-bucket/audit/", Region: srv.Region, Endpoint: srv.Endpoint,
		ExternalID: "ext-123",
		Creds:      destination.Credentials{Kind: "aws_role", RoleARN: "arn:aws:iam::123456789012:role/auditexport"},
	}
	opts := destination.OpenOptions{AllowPrivateEndpoints: true}
	ctx := context.Background()

	t.Run("assumes the role", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		b, _, err := destination.Open(ctx, in, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.WriteAll(ctx, "audit/role.txt", []byte("via sts"), nil); err != nil {
			t.Fatalf("write with assumed-role credentials: %v", err)
		}
		// Read back with the root client, independent of the code under test.
		out, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("role-bucket"), Key: aws.String("audit/role.txt")})
		if err != nil {
			t.Fatal(err)
		}
		defer out.Body.Close()
		body, _ := io.ReadAll(out.Body)
		if string(body) != "via sts" {
			t.Errorf("object = %q", body)
		}
	})

	t.Run("wrong own secret", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
		b, _, err := destination.Open(ctx, in, opts)
		if err == nil {
			defer b.Close()
			err = b.WriteAll(ctx, "audit/denied.txt", []byte("x"), nil)
		}
		if err == nil {
			t.Fatal("write succeeded with a wrong secret for AssumeRole")
		}
		pe, transient := destination.Describe(b, err)
		if pe == nil || pe.Code != "AccessDenied" || pe.Message == "" {
			t.Fatalf("provider error %+v, want STS's AccessDenied with its message, in %v", pe, err)
		}
		if transient {
			t.Errorf("an AccessDenied from STS is reported as transient")
		}
		if !strings.Contains(err.Error(), "AssumeRole") {
			t.Errorf("error does not name the STS call: %v", err)
		}
		t.Logf("provider error: %s: %s", pe.Code, pe.Message)
	})
}
