package destination

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	azblobpkg "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// Integration is what opening a bucket needs to know about an integration.
type Integration struct {
	Provider    Provider
	Destination string // base location URI
	Region      string
	Endpoint    string // custom endpoint (S3-compatible stores, emulators)
	ExternalID  string // for aws_role
	Creds       Credentials
	OrgID       string // owner; picks the directory LOCAL destinations must lie under
}

// OpenOptions are server-wide settings for opening buckets.
type OpenOptions struct {
	// AllowPrivateEndpoints permits connecting to loopback/private addresses.
	AllowPrivateEndpoints bool
	// Local says where each organization's LOCAL destinations may lie.
	Local LocalDirs
}

// httpClient returns the HTTP client used to reach a provider. Unless
// private endpoints are allowed, every connection is checked at dial time
// (not only when the endpoint was saved), so DNS rebinding cannot reach an
// internal address.
func httpClient(o OpenOptions) *http.Client {
	d := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowPrivateEndpoints {
		d.Control = DialControl
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	tr.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: tr}
}

// Open opens the integration's bucket with its own credentials and returns
// it with the parsed base location. Keys are relative to the bucket root.
func Open(ctx context.Context, in Integration, o OpenOptions) (*blob.Bucket, Location, error) {
	base, err := ParseDestination(in.Provider, in.Destination)
	if err != nil {
		return nil, base, err
	}
	var b *blob.Bucket
	switch in.Provider {
	case S3:
		b, err = openS3(ctx, in, base, o)
	case GCS:
		b, err = openGCS(ctx, in, base, o)
	case AzureBlob:
		b, err = openAzure(ctx, in, base, o)
	case Local:
		b, err = openLocal(base, in.OrgID, o.Local)
	default:
		err = fmt.Errorf("unknown provider %q", in.Provider)
	}
	return b, base, err
}

func openS3(ctx context.Context, in Integration, base Location, o OpenOptions) (*blob.Bucket, error) {
	region := in.Region
	if region == "" {
		region = "us-east-1"
	}
	cfg := aws.Config{Region: region, HTTPClient: httpClient(o), RetryMaxAttempts: 3}
	switch in.Creds.Kind {
	case "aws_access_key":
		cfg.Credentials = credentials.NewStaticCredentialsProvider(in.Creds.AccessKeyID, in.Creds.SecretAccessKey, "")
	case "aws_role":
		// The service's own identity assumes the customer's role with the
		// integration's external ID. That identity is the standard AWS chain
		// of the server process (environment, shared config, web identity,
		// container or instance role), resolved with the SDK's own HTTP
		// client: the instance metadata endpoint is link-local, which the
		// guarded client (meant for customer-supplied endpoints) refuses.
		own, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
		if err != nil {
			return nil, fmt.Errorf("loading the service's own AWS credentials: %w", err)
		}
		stsClient := sts.NewFromConfig(own, func(so *sts.Options) {
			so.HTTPClient = cfg.HTTPClient
			so.RetryMaxAttempts = cfg.RetryMaxAttempts
			if in.Endpoint != "" {
				// S3-compatible stores with STS (MinIO) serve it on the S3 endpoint.
				so.BaseEndpoint = aws.String(in.Endpoint)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, in.Creds.RoleARN, func(ao *stscreds.AssumeRoleOptions) {
			ao.ExternalID = aws.String(in.ExternalID)
			ao.RoleSessionName = "auditexport"
		}))
	default:
		return nil, fmt.Errorf("S3 integration has credentials of kind %q", in.Creds.Kind)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if in.Endpoint != "" {
			so.BaseEndpoint = aws.String(in.Endpoint)
			so.UsePathStyle = true
		}
	})
	return s3blob.OpenBucket(ctx, client, base.Bucket, nil)
}

func openGCS(ctx context.Context, in Integration, base Location, o OpenOptions) (*blob.Bucket, error) {
	hc := httpClient(o)
	var opts []option.ClientOption
	if in.Endpoint != "" {
		// Emulators (fake-gcs-server) take no credentials.
		opts = []option.ClientOption{option.WithEndpoint(strings.TrimSuffix(in.Endpoint, "/") + "/storage/v1/"), option.WithHTTPClient(hc)}
	} else {
		if in.Creds.Kind != "gcs_service_account" {
			return nil, fmt.Errorf("GCS integration has credentials of kind %q", in.Creds.Kind)
		}
		creds, err := google.CredentialsFromJSON(ctx, []byte(in.Creds.JSONKey), storage.ScopeReadWrite)
		if err != nil {
			return nil, fmt.Errorf("service account key: %w", err)
		}
		// Our transport (dial-time address check, timeouts) under OAuth2.
		hc = &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: hc.Transport}}
		opts = []option.ClientOption{option.WithHTTPClient(hc)}
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return gcsblob.OpenBucket(ctx, nil, base.Bucket, &gcsblob.Options{Client: client})
}

func openAzure(ctx context.Context, in Integration, base Location, o OpenOptions) (*blob.Bucket, error) {
	service := "https://" + base.Account + ".blob.core.windows.net"
	if in.Endpoint != "" {
		service = strings.TrimSuffix(in.Endpoint, "/")
	}
	containerURL := service + "/" + base.Bucket
	copts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: httpClient(o), Retry: policy.RetryOptions{MaxRetries: 2}}}
	var (
		c   *container.Client
		err error
	)
	switch in.Creds.Kind {
	case "azure_shared_key":
		cred, cerr := azblobpkg.NewSharedKeyCredential(in.Creds.AccountName, in.Creds.AccountKey)
		if cerr != nil {
			return nil, cerr
		}
		c, err = container.NewClientWithSharedKeyCredential(containerURL, cred, copts)
	case "azure_sas":
		c, err = container.NewClientWithNoCredential(containerURL+"?"+strings.TrimPrefix(in.Creds.SASToken, "?"), copts)
	default:
		return nil, fmt.Errorf("Azure integration has credentials of kind %q", in.Creds.Kind)
	}
	if err != nil {
		return nil, err
	}
	return azureblob.OpenBucket(ctx, c, nil)
}

// Key turns an object URI (under base) into the key within the bucket.
func Key(base Location, objectURI string) (string, error) {
	loc, err := ValidateObjectURI(base, objectURI)
	if err != nil {
		return "", err
	}
	if base.Provider == Local {
		return strings.TrimPrefix(strings.TrimPrefix(loc.Path, strings.TrimSuffix(base.Path, "/")), "/"), nil
	}
	return loc.Path, nil
}

// ProviderError is what a provider said when it refused an operation.
type ProviderError struct {
	Code    string // provider's code, e.g. AccessDenied, AuthenticationFailed, 403
	Message string // provider's message, verbatim
}

// Describe extracts the provider's own error from err (nil if the provider
// did not answer, e.g. a connection failure) and whether retrying may help.
func Describe(b *blob.Bucket, err error) (*ProviderError, bool) {
	var pe *ProviderError
	var s3err smithy.APIError
	var azErr *azcore.ResponseError
	var gErr *googleapi.Error
	switch {
	case b != nil && b.ErrorAs(err, &s3err), errors.As(err, &s3err):
		pe = &ProviderError{Code: s3err.ErrorCode(), Message: s3err.ErrorMessage()}
	case b != nil && b.ErrorAs(err, &azErr), errors.As(err, &azErr):
		pe = &ProviderError{Code: azErr.ErrorCode, Message: azureMessage(azErr)}
	case b != nil && b.ErrorAs(err, &gErr), errors.As(err, &gErr):
		pe = &ProviderError{Code: fmt.Sprint(gErr.Code), Message: gErr.Message}
		if len(gErr.Errors) > 0 && gErr.Errors[0].Reason != "" {
			pe.Code = gErr.Errors[0].Reason
		}
	}
	if pe != nil && pe.Message == "" {
		pe.Message = pe.Code
	}
	switch gcerrors.Code(err) {
	case gcerrors.Unknown, gcerrors.Internal, gcerrors.ResourceExhausted, gcerrors.DeadlineExceeded:
		return pe, !isAuthCode(pe)
	}
	return pe, false
}

func isAuthCode(pe *ProviderError) bool {
	if pe == nil {
		return false
	}
	switch pe.Code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthenticationFailed",
		"AuthorizationFailure", "NoSuchBucket", "ContainerNotFound", "403", "401", "forbidden", "notFound":
		return true
	}
	return false
}

// azureMessage keeps the provider's message (the <Message> of the XML error
// body), not the SDK's multi-line dump of the whole HTTP response.
func azureMessage(e *azcore.ResponseError) string {
	if m := azureMessageRE.FindStringSubmatch(e.Error()); m != nil {
		return strings.TrimSpace(m[1])
	}
	return fmt.Sprintf("%s (HTTP %d)", e.ErrorCode, e.StatusCode)
}

var azureMessageRE = regexp.MustCompile(`(?s)<Message>(.*?)</Message>`)
