// Package auditexport is the Go client of the auditexport gRPC API.
//
// Dial returns typed service clients with the API key attached to every call
// (as "authorization: Bearer <key>"), retries of idempotent reads on
// transient failures, and a SendNow helper that follows an export to its end.
package auditexport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// Client holds typed service clients with the API key attached.
type Client struct {
	Integrations pb.IntegrationServiceClient
	Workbooks    pb.WorkbookServiceClient
	Schedules    pb.ScheduleServiceClient
	Accounts     pb.AccountServiceClient

	conn *grpc.ClientConn
	opts options
}

type options struct {
	tls         *tls.Config
	maxAttempts int
	initial     time.Duration
	followFor   time.Duration
	dialOpts    []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithTLS connects with TLS using cfg. Without it the connection is
// plaintext (suitable for loopback or a sidecar that terminates TLS).
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls = cfg
	}
}

// WithRetry sets how often idempotent calls (Get*, List*, QueryElement) are
// attempted in all (maxAttempts; 1 disables retries) and the first backoff
// interval, which then grows exponentially with jitter. The default is 4
// attempts starting at 200ms.
func WithRetry(maxAttempts int, initial time.Duration) Option {
	return func(o *options) {
		if maxAttempts < 1 {
			maxAttempts = 1
		}
		if initial <= 0 {
			initial = 200 * time.Millisecond
		}
		o.maxAttempts, o.initial = maxAttempts, initial
	}
}

// WithFollowTimeout sets how long SendNow and WatchExportRun keep trying to
// reattach to a run whose stream broke (UNAVAILABLE: a restart, a failover,
// a network blip) before giving up; the clock restarts with every progress
// message received. The default is 2 minutes. The run itself goes on on the
// server either way.
func WithFollowTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.followFor = d
		}
	}
}

// WithDialOptions appends raw gRPC dial options (applied after the client's
// own, so they can override transport credentials, add interceptors, etc.).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// Dial creates a client for target (host:port or any grpc.NewClient target)
// that authenticates with apiKey. The connection is established lazily; ctx
// is reserved for future use and not retained.
func Dial(ctx context.Context, target, apiKey string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if apiKey == "" {
		return nil, errors.New("auditexport: empty API key")
	}
	o := options{maxAttempts: 4, initial: 200 * time.Millisecond, followFor: 2 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	tc := insecure.NewCredentials()
	if o.tls != nil {
		tc = credentials.NewTLS(o.tls)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(tc),
		grpc.WithPerRPCCredentials(bearer{key: apiKey}),
		grpc.WithChainUnaryInterceptor(retryInterceptor(o.maxAttempts, o.initial)),
	}
	dopts = append(dopts, o.dialOpts...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("auditexport: dial %s: %w", target, err)
	}
	return &Client{
		Integrations: pb.NewIntegrationServiceClient(conn),
		Workbooks:    pb.NewWorkbookServiceClient(conn),
		Schedules:    pb.NewScheduleServiceClient(conn),
		Accounts:     pb.NewAccountServiceClient(conn),
		conn:         conn,
		opts:         o,
	}, nil
}

// Conn returns the underlying connection (e.g. for the health service).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// bearer is the per-RPC credential carrying the API key.
type bearer struct{ key string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.key}, nil
}

// RequireTransportSecurity is false so that plaintext connections (loopback,
// tests, TLS-terminating sidecars) work; with WithTLS the key only travels
// over TLS anyway.
func (b bearer) RequireTransportSecurity() bool { return false }

// idempotent reports whether the unary RPC fullMethod ("/pkg.Service/Method")
// only reads and may therefore be retried.
func idempotent(fullMethod string) bool {
	m := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	return strings.HasPrefix(m, "Get") || strings.HasPrefix(m, "List") || m == "QueryElement"
}

// retryable reports whether err is a transient failure worth retrying.
func retryable(ctx context.Context, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		// The server's (or a proxy's) deadline, not the caller's.
		return ctx.Err() == nil
	}
	return false
}

// retryInterceptor retries idempotent unary calls on Unavailable (and on a
// DeadlineExceeded that is not the caller's) with exponential backoff and
// jitter. Non-idempotent calls are never retried.
func retryInterceptor(maxAttempts int, initial time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if maxAttempts <= 1 || !idempotent(method) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = initial
		b.RandomizationFactor = 0.5
		b.Multiplier = 2
		b.MaxInterval = 30 * initial
		b.Reset()
		var err error
		for attempt := 1; ; attempt++ {
			err = invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || attempt >= maxAttempts || !retryable(ctx, err) {
				return err
			}
			t := time.NewTimer(b.NextBackOff())
			select {
			case <-ctx.Done():
				t.Stop()
				return err // the last RPC error says more than ctx.Err()
			case <-t.C:
			}
		}
	}
}

// Terminal reports whether p ends a run's progress stream (SUCCEEDED,
// FAILED, CANCELED or SKIPPED).
func Terminal(p pb.ExportPhase) bool {
	switch p {
	case pb.ExportPhase_EXPORT_PHASE_SUCCEEDED, pb.ExportPhase_EXPORT_PHASE_FAILED,
		pb.ExportPhase_EXPORT_PHASE_CANCELED, pb.ExportPhase_EXPORT_PHASE_SKIPPED:
		return true
	}
	return false
}

// progressStream is the Recv of a SendNow or WatchExportRun stream.
type progressStream func() (*pb.ExportProgress, error)

// streamOf adapts a SendNow or WatchExportRun stream.
func streamOf[M interface{ GetProgress() *pb.ExportProgress }](recv func() (M, error)) progressStream {
	return func() (*pb.ExportProgress, error) {
		m, err := recv()
		return m.GetProgress(), err
	}
}

// SendNow starts an export of the schedule and calls onProgress (if not nil)
// for every progress message, in order. When the terminal message has
// arrived it returns the final ExportRun (fetched with GetExportRun). If the
// stream breaks with Unavailable after the run has started, SendNow follows
// the run with WatchExportRun instead (the run does not stop when a client
// disconnects; see WithFollowTimeout). The returned error is nil for a run that ended FAILED,
// CANCELED or SKIPPED: inspect the run's state and error.
func (c *Client) SendNow(ctx context.Context, scheduleID string, onProgress func(*pb.ExportProgress)) (*pb.ExportRun, error) {
	st, err := c.Schedules.SendNow(ctx, &pb.SendNowRequest{Id: scheduleID})
	if err != nil {
		return nil, err
	}
	return c.follow(ctx, "", streamOf(st.Recv), onProgress)
}

// WatchExportRun follows an existing run (started by any client, or by the
// scheduler, on any replica) like SendNow does; a run that has already
// ended answers with its terminal message at once.
func (c *Client) WatchExportRun(ctx context.Context, runID string, onProgress func(*pb.ExportProgress)) (*pb.ExportRun, error) {
	st, err := c.Schedules.WatchExportRun(ctx, &pb.WatchExportRunRequest{Id: runID})
	if err != nil {
		return nil, err
	}
	return c.follow(ctx, runID, streamOf(st.Recv), onProgress)
}

// follow reads st to the terminal message, reattaching with
// WatchExportRun while the stream breaks with UNAVAILABLE (for up to
// followFor since the last message), and returns the stored run.
func (c *Client) follow(ctx context.Context, runID string, st progressStream, onProgress func(*pb.ExportProgress)) (*pb.ExportRun, error) {
	done := false
	last := time.Now()
	recv := func(st progressStream) error {
		for {
			p, err := st()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if p == nil {
				continue
			}
			last = time.Now()
			if runID == "" {
				runID = p.GetRunId()
			}
			if onProgress != nil {
				onProgress(p)
			}
			if Terminal(p.GetPhase()) {
				done = true
				return nil
			}
		}
	}
	err := recv(st)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.opts.initial
	b.MaxInterval = 5 * time.Second
	b.Reset()
	for !done && runID != "" && status.Code(err) == codes.Unavailable && time.Since(last) < c.opts.followFor {
		// The connection broke mid-run: follow the run from wherever it
		// is, on whichever replica answers.
		if serr := sleep(ctx, b.NextBackOff()); serr != nil {
			break
		}
		var w pb.ScheduleService_WatchExportRunClient
		w, err = c.Schedules.WatchExportRun(ctx, &pb.WatchExportRunRequest{Id: runID})
		if err != nil {
			continue
		}
		before := last
		err = recv(streamOf(w.Recv))
		if last != before {
			b.Reset()
		}
	}
	if err != nil && !done {
		if runID != "" {
			return nil, fmt.Errorf("auditexport: following run %s (it goes on on the server): %w", runID, err)
		}
		return nil, err
	}
	if runID == "" {
		return nil, errors.New("auditexport: progress stream ended without a run id")
	}
	if !done {
		return nil, fmt.Errorf("auditexport: progress stream of run %s ended without a terminal message", runID)
	}
	r, err := c.Schedules.GetExportRun(ctx, &pb.GetExportRunRequest{Id: runID})
	if err != nil {
		return nil, err
	}
	return r.GetRun(), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
