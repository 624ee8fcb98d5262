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
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
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
	ObjectLock  ObjectLock
}

// ObjectLock puts every upload under S3 Object Lock retention (Mode
// GOVERNANCE or COMPLIANCE for Days from the upload); zero: none.
type ObjectLock struct {
	Mode string
	Days int
}

// OpenOptions are server-wide settings for opening buckets.
type OpenOptions struct {
	// AllowPrivateEndpoints permits connecting to loopback/private addresses.
	AllowPrivateEndpoints bool
	// Local says where each organization's LOCAL destinations may lie.
	Local LocalDirs
	// StallTimeout fails a request whose connection sends and receives
	// nothing for this long (a black-holed store) as a transient network
	// error; 0: DefaultStallTimeout, negative: none.
	StallTimeout time.Duration
	// GCSChunkRetryDeadline is how long the GCS client retries one chunk
	// of a resumable upload before the upload fails (0: the client's
	// default, DefaultGCSChunkRetryDeadline). See UploadOptions.
	GCSChunkRetryDeadline time.Duration
	// UploadConcurrency is how many parts of one upload are sent at once
	// on S3 (multipart parts) and Azure (blocks); 0: DefaultUploadConcurrency.
	// See UploadOptions.
	UploadConcurrency int
}

// DefaultUploadConcurrency (--upload-concurrency) is how many parts of an
// upload are in flight. The SDKs' own default is 5; S3's transfer manager
// allocates (concurrency + 1) part buffers of BufferSize for every upload
// at its start, so 5 cost 48 MiB per running export, and 2 are as fast
// into a local store (docs/BENCHMARKS.md).
const DefaultUploadConcurrency = 2

// MaxUploadConcurrency bounds --upload-concurrency.
const MaxUploadConcurrency = 32

// DefaultGCSChunkRetryDeadline is the GCS client's own per-chunk retry
// deadline (--gcs-chunk-retry-deadline).
const DefaultGCSChunkRetryDeadline = 32 * time.Second

// UploadOptions completes wo (nil: fresh options) with what o sets for
// writers into b: the parts in flight on S3 and Azure (unless wo sets them),
// S3's part buffers (s3PartBuffers) and, on GCS, the per-chunk retry
// deadline. Its chunks are retried for that long whatever the client's
// retry policy says (3 tries a request bounds everything else), so it
// decides how long an upload to an unreachable GCS takes to fail before
// the run's own attempts.
func UploadOptions(o OpenOptions, b *blob.Bucket, wo *blob.WriterOptions) *blob.WriterOptions {
	if wo == nil {
		wo = &blob.WriterOptions{}
	}
	if wo.MaxConcurrency == 0 {
		wo.MaxConcurrency = o.UploadConcurrency
		if wo.MaxConcurrency <= 0 {
			wo.MaxConcurrency = DefaultUploadConcurrency
		}
	}
	var client *s3.Client
	if b != nil && b.As(&client) {
		s3PartBuffers(client, wo)
	}
	if d := o.GCSChunkRetryDeadline; d > 0 {
		thenBeforeWrite(wo, func(as func(any) bool) error {
			var w *storage.Writer
			if as(&w) {
				w.ChunkRetryDeadline = d
			}
			return nil
		})
	}
	return wo
}

// s3PartBuffers makes an S3 upload read its first part straight into a
// part buffer. The transfer manager (v0.4) reads up to its multipart
// threshold (16 MiB, twice the part size) with io.ReadAll before it decides
// between one PUT and a multipart upload, keeps that slice until the first
// part is sent, and only then allocates its (concurrency + 1) part
// buffers; ReadAll's growing copies are garbage on top. A threshold of one
// part size keeps the first read to one part: a 1M-row CSV+gzip export to
// MinIO peaked at 86.5 MiB of anonymous memory instead of 103.8
// (docs/BENCHMARKS.md). Objects between one part and the old
// threshold become multipart uploads of two parts instead of one PUT.
//
// gocloud's s3blob builds the transfer manager per writer and hands it to
// BeforeWrite; its options are not exported, so the hook replaces it by
// one built the same way (s3blob's: the part size and concurrency of wo,
// the bucket's checksum setting, s3Checksums) with the threshold set.
func s3PartBuffers(client *s3.Client, wo *blob.WriterOptions) {
	part := int64(wo.BufferSize)
	if part <= 0 {
		part = s3DefaultPartSize
	}
	concurrency := wo.MaxConcurrency
	thenBeforeWrite(wo, func(as func(any) bool) error {
		var tm *transfermanager.Client
		if !as(&tm) {
			return nil
		}
		*tm = *transfermanager.New(client, func(to *transfermanager.Options) {
			to.RequestChecksumCalculation = s3Checksums
			to.PartSizeBytes = part
			to.Concurrency = concurrency
			to.MultipartUploadThreshold = part
		})
		return nil
	})
}

// s3DefaultPartSize is the transfer manager's part size when the writer
// sets none (s3blob leaves it to the SDK).
const s3DefaultPartSize = 8 << 20

// s3Checksums is the request checksum setting of every S3 bucket opened
// here (s3blob.Options), which s3blob passes to its transfer manager:
// the SDK's default, a CRC32 checksum on each part.
const s3Checksums = aws.RequestChecksumCalculationWhenSupported

// thenBeforeWrite makes o's BeforeWrite run f after what it already ran.
func thenBeforeWrite(o *blob.WriterOptions, f func(as func(any) bool) error) {
	prev := o.BeforeWrite
	o.BeforeWrite = func(as func(any) bool) error {
		if prev != nil {
			if err := prev(as); err != nil {
				return err
			}
		}
		return f(as)
	}
}

// httpClient returns the one HTTP client every SDK gets to reach a
// provider (S3, STS, GCS and its OAuth token exchange, Azure; their retries
// included). Unless private endpoints are allowed, every connection is
// checked at dial time (not only when the endpoint was saved), so DNS
// rebinding cannot reach an internal address. Redirects are not followed:
// no provider API needs them, and a redirect would send the request (and
// its body) to a host nobody validated. A connection that transfers
// nothing for o.StallTimeout fails (StallError), whatever the request is
// waiting for.
func httpClient(o OpenOptions) *http.Client {
	d := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowPrivateEndpoints {
		d.Control = DialControl
	}
	stall := o.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy would dial for us, past the address check
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || stall < 0 {
			return c, err
		}
		return &stallConn{Conn: c, d: stall}, nil
	}
	tr.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// redactingClient is the guarded client as the AWS and Azure SDKs take it
// (an interface with Do): a failed request's error names its URL, which for
// a SAS or presigned request holds the signature, so the error text is
// redacted before the SDK wraps it.
type redactingClient struct {
	c       *http.Client
	secrets []string
}

func (r redactingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.c.Do(req)
	return resp, redactErr(err, r.secrets...)
}

// tokenErrorTransport turns an OAuth token endpoint's refusal into a
// TokenError: oauth2.RetrieveError carries the endpoint's whole response
// body, and the endpoint is whatever token_uri the key names.
type tokenErrorTransport struct{ base http.RoundTripper }

func (t tokenErrorTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	var re *oauth2.RetrieveError
	if err != nil && errors.As(err, &re) {
		return resp, tokenError(re)
	}
	return resp, err
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
	// Every error leaving this package is redacted, so no caller can forget.
	return b, base, redactErr(err, secretValues(in.Creds)...)
}

func openS3(ctx context.Context, in Integration, base Location, o OpenOptions) (*blob.Bucket, error) {
	region := in.Region
	if region == "" {
		region = "us-east-1"
	}
	cfg := aws.Config{Region: region, HTTPClient: redactingClient{httpClient(o), secretValues(in.Creds)}, RetryMaxAttempts: 3}
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
		// The AssumeRole call itself goes through the guarded client: its
		// endpoint may be the integration's.
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
	return s3blob.OpenBucket(ctx, client, base.Bucket, &s3blob.Options{RequestChecksumCalculation: s3Checksums})
}

func openGCS(ctx context.Context, in Integration, base Location, o OpenOptions) (*blob.Bucket, error) {
	hc := httpClient(o)
	hc.Transport = gcsSingleShotTries{hc.Transport}
	var opts []option.ClientOption
	if in.Endpoint != "" {
		// Emulators (fake-gcs-server) take no credentials.
		opts = []option.ClientOption{option.WithEndpoint(strings.TrimSuffix(in.Endpoint, "/") + "/storage/v1/"), option.WithHTTPClient(hc)}
	} else {
		if in.Creds.Kind != "gcs_service_account" {
			return nil, fmt.Errorf("GCS integration has credentials of kind %q", in.Creds.Kind)
		}
		// The token exchange POSTs to the key's own token_uri with the
		// client found in ctx (http.DefaultClient otherwise): give it the
		// guarded one. Only service account keys: other credential types
		// read local files, run commands or call metadata servers.
		tctx := context.WithValue(ctx, oauth2.HTTPClient, hc)
		creds, err := google.CredentialsFromJSONWithType(tctx, []byte(in.Creds.JSONKey), google.ServiceAccount, storage.ScopeReadWrite)
		if err != nil {
			return nil, errors.New("the service account key is not usable") // the parser's text may quote the key
		}
		// Our transport (dial-time address check, timeouts) under OAuth2.
		hc = &http.Client{Transport: tokenErrorTransport{&oauth2.Transport{Source: creds.TokenSource, Base: hc.Transport}}, CheckRedirect: hc.CheckRedirect}
		opts = []option.ClientOption{option.WithHTTPClient(hc)}
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	// Like the S3 and Azure clients: 3 tries a request. The GCS client's
	// default is to retry until the context ends, so an unreachable
	// endpoint kept a run RUNNING for good instead of failing it after the
	// runner's own attempts. (Each chunk of an upload is retried apart from
	// this, for GCSChunkRetryDeadline: see UploadOptions.)
	// Single-request uploads are bounded by gcsSingleShotTries instead.
	client.SetRetry(storage.WithMaxAttempts(gcsRequestTries), storage.WithErrorFunc(gcsShouldRetry))
	return gcsblob.OpenBucket(ctx, nil, base.Bucket, &gcsblob.Options{Client: client})
}

func openAzure(ctx context.Context, in Integration, base Location, o OpenOptions) (*blob.Bucket, error) {
	service := "https://" + base.Account + ".blob.core.windows.net"
	if in.Endpoint != "" {
		service = strings.TrimSuffix(in.Endpoint, "/")
	}
	containerURL := service + "/" + base.Bucket
	copts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: redactingClient{httpClient(o), secretValues(in.Creds)}, Retry: policy.RetryOptions{MaxRetries: 2}}}
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
	Message string // provider's message, redacted and bounded (MaxMessageLen)
}

// Describe extracts the provider's own error from err (nil if the provider
// did not answer, e.g. a connection failure) and whether retrying may help.
func Describe(b *blob.Bucket, err error) (*ProviderError, bool) {
	pe := providerError(b, err)
	switch gcerrors.Code(err) {
	case gcerrors.Unknown, gcerrors.Internal, gcerrors.ResourceExhausted, gcerrors.DeadlineExceeded:
		return pe, !isAuthCode(pe)
	}
	return pe, false
}

// providerError is the provider's own code and message in err, or nil.
func providerError(b *blob.Bucket, err error) *ProviderError {
	var pe *ProviderError
	var s3err smithy.APIError
	var azErr *azcore.ResponseError
	var gErr *googleapi.Error
	switch {
	case b != nil && b.ErrorAs(err, &s3err), errors.As(err, &s3err):
		pe = &ProviderError{Code: s3err.ErrorCode(), Message: s3err.ErrorMessage()}
	case b != nil && b.ErrorAs(err, &azErr), errors.As(err, &azErr):
		pe = &ProviderError{Code: azErr.ErrorCode, Message: azureMessage(azErr)}
		if pe.Code == "" { // not an Azure error body: the status is all we know
			pe.Code = fmt.Sprint(azErr.StatusCode)
		}
	case b != nil && b.ErrorAs(err, &gErr), errors.As(err, &gErr):
		pe = &ProviderError{Code: fmt.Sprint(gErr.Code), Message: gErr.Message}
		if len(gErr.Errors) > 0 && gErr.Errors[0].Reason != "" {
			pe.Code = gErr.Errors[0].Reason
		}
	}
	if pe != nil {
		// What a provider said is still text from the network: bounded,
		// and redacted like everything else leaving this package.
		pe.Code, pe.Message = bound(Redact(pe.Code), 128), clean(pe.Message)
		if pe.Message == "" {
			pe.Message = pe.Code
		}
	}
	return pe
}

func isAuthCode(pe *ProviderError) bool {
	if pe == nil {
		return false
	}
	switch pe.Code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthenticationFailed",
		"AuthorizationFailure", "NoSuchBucket", "ContainerNotFound", "403", "401", "forbidden", "Forbidden", "notFound":
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
	return fmt.Sprintf("HTTP %d", e.StatusCode)
}

var azureMessageRE = regexp.MustCompile(`(?s)<Message>(.*?)</Message>`)
