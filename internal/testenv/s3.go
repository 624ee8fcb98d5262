package testenv

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// S3 is a MinIO server on 127.0.0.1 with its data in a t.TempDir().
type S3 struct {
	Endpoint  string // http://127.0.0.1:<port>
	AccessKey string
	SecretKey string
	Region    string

	t       testing.TB
	bin     string
	dataDir string
	port    int
	mu      sync.Mutex
	proc    *process
}

// StartMinIO starts MinIO and stops it when the test ends.
func StartMinIO(t testing.TB) *S3 {
	t.Helper()
	bin := Require(t, ToolMinIO)
	s := &S3{
		AccessKey: "testenv-access",
		SecretKey: "testenv-secret-key",
		Region:    "us-east-1",
		t:         t,
		bin:       bin,
		dataDir:   t.TempDir(),
	}
	p, ports := launch(t, server{
		name: "minio", bin: bin, nports: 1, env: s.env(), args: s.args,
		ready: func(ports []int) func(context.Context) error {
			return httpOK(fmt.Sprintf("http://%s/minio/health/live", hostPort(ports[0])))
		},
	})
	s.proc, s.port = p, ports[0]
	s.Endpoint = "http://" + hostPort(s.port)
	t.Cleanup(func() { // the process registered by launch may have been replaced by Start
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		p.stop()
	})
	return s
}

func (s *S3) env() []string {
	return []string{
		"MINIO_ROOT_USER=" + s.AccessKey,
		"MINIO_ROOT_PASSWORD=" + s.SecretKey,
		"MINIO_BROWSER=off", // no console listener on a second (random, all-interfaces) port
		"MINIO_UPDATE=off",
		"MINIO_CALLHOME_ENABLE=off",
	}
}

func (s *S3) args(ports []int) []string {
	return []string{
		"server", filepath.Join(s.dataDir, "data"),
		"--address", hostPort(ports[0]),
		"--certs-dir", filepath.Join(s.dataDir, "certs"), // not ~/.minio
		"--quiet",
	}
}

// Client returns an S3 client for this server (static credentials, path-style
// addressing), the same wiring production code uses for S3-compatible
// endpoints.
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
	})
}

// CreateBucket creates a bucket.
func (s *S3) CreateBucket(t testing.TB, name string) {
	t.Helper()
	s.createBucket(t, &s3.CreateBucketInput{Bucket: aws.String(name)})
}

// CreateLockedBucket creates a bucket with S3 Object Lock enabled (which
// also turns on versioning; it cannot be enabled later).
func (s *S3) CreateLockedBucket(t testing.TB, name string) {
	t.Helper()
	s.createBucket(t, &s3.CreateBucketInput{Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(true)})
}

func (s *S3) createBucket(t testing.TB, in *s3.CreateBucketInput) {
	t.Helper()
	name := aws.ToString(in.Bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, err := s.Client().CreateBucket(ctx, in)
		if err == nil {
			return
		}
		// /minio/health/live answers before MinIO has initialized its
		// object layer; until then every call is refused with this code.
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "XMinioServerNotInitialized" || ctx.Err() != nil {
			t.Fatalf("testenv: create S3 bucket %q: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills the server with SIGKILL (a crash, not a clean shutdown), for
// fault tests; data already written stays in the data dir. Safe to call from
// any goroutine and more than once.
func (s *S3) Stop() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	p.kill()
}

// Start restarts a stopped server on the same port and data dir (so Endpoint
// and the stored objects stay the same). It calls t.Fatal on failure, so call
// it from the test goroutine; TryStart is the variant for other goroutines.
func (s *S3) Start() {
	s.t.Helper()
	if err := s.TryStart(); err != nil {
		s.t.Fatalf("testenv: restart minio: %v", err)
	}
}

// TryStart is Start returning an error instead of failing the test.
func (s *S3) TryStart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.proc.exited() {
		return errors.New("minio is still running; Stop it first")
	}
	var err error
	for try := 0; try < startTries; try++ {
		out := &lockedBuffer{}
		var p *process
		p, err = startProcess("minio", s.bin, s.args([]int{s.port}), s.env(), "", out)
		if err != nil {
			return err
		}
		s.proc = p
		err = waitReady(p, readyTimeout, httpOK(s.Endpoint+"/minio/health/live"))
		if err == nil {
			return nil
		}
		p.stop()
		retry := errors.Is(err, errExited)
		err = fmt.Errorf("%w\n--- minio output ---\n%s", err, out.String())
		if !retry {
			break
		}
		time.Sleep(500 * time.Millisecond) // the port may be held a moment longer
	}
	return err
}

// WaitSTS waits until MinIO's STS answers AssumeRole (its IAM subsystem
// starts after the object layer and refuses calls with "Server not
// initialized" until then), so role tests do not race the server's start.
func (s *S3) WaitSTS(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := sts.New(sts.Options{Region: s.Region, BaseEndpoint: aws.String(s.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")})
	for {
		_, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::123456789012:role/probe"), RoleSessionName: aws.String("testenv")})
		if err == nil || !strings.Contains(err.Error(), "not initialized") {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("testenv: MinIO STS not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
