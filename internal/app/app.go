// Package app wires the server: database, services, gRPC, REST gateway and
// background work under one errgroup, with graceful shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"entgo.io/ent/dialect"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/clientip"
	"github.com/auditexport/auditexport/internal/config"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/metrics"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/retention"
	"github.com/auditexport/auditexport/internal/scheduler"
	"github.com/auditexport/auditexport/internal/signing"
	"github.com/auditexport/auditexport/server"
)

// outboxInterval is how often each replica retries mails SMTP did not
// accept (each mail waits its own backoff, 30 s doubling to 1 h).
const outboxInterval = 15 * time.Second

// Options are what tests (and main) hand to Run besides the config.
type Options struct {
	// Listeners to serve on; nil means listen on cfg.GRPCAddr / cfg.HTTPAddr.
	GRPCListener net.Listener
	HTTPListener net.Listener
	// Stdout receives the one-time bootstrap key; logs go to Logger.
	Stdout io.Writer
	Logger *slog.Logger
	// Ready, if set, is called once both listeners accept connections.
	Ready func(grpcAddr, httpAddr string)
}

// NewLogger builds the JSON (or text) slog logger of the config.
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Run serves until ctx is canceled, then shuts down gracefully.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	cfg.Complete()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	log := opts.Logger
	if log == nil {
		log = NewLogger(&cfg, os.Stderr)
	}
	var tlsf *tlsFiles
	if cfg.TLS() {
		// Before anything else: a wrong path fails the start at once.
		var err error
		if tlsf, err = newTLSFiles(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile, log); err != nil {
			return err
		}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		stopped := make(chan struct{})
		defer func() { signal.Stop(hup); close(stopped) }()
		go func() {
			for {
				select {
				case <-stopped:
					return
				case <-hup:
					log.Info("SIGHUP: reloading the TLS certificate")
					tlsf.reloadOrKeep()
				}
			}
		}()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := os.MkdirAll(cfg.LocalRoot, 0o700); err != nil {
		return fmt.Errorf("--local-root: %w", err)
	}
	d, err := db.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer d.Close()
	d.SetMaxConns(cfg.DBMaxConns)
	if err := d.Migrate(ctx, Migrations(d, log)...); err != nil {
		return err
	}
	keys, err := OpenKeyring(ctx, d, cfg.MasterKeyFile)
	if err != nil {
		return err
	}
	if err := EnsureBuiltins(ctx, d); err != nil {
		return err
	}
	bootKey, keyFileWritten := cfg.BootstrapAdminKey, false
	if cfg.BootstrapAdminKeyFile != "" {
		if bootKey != "" {
			return errors.New("--bootstrap-admin-key and --bootstrap-admin-key-file: give one of them")
		}
		if bootKey, keyFileWritten, err = bootstrapKeyFromFile(cfg.BootstrapAdminKeyFile); err != nil {
			return err
		}
	}
	created, err := Bootstrap(ctx, d, bootKey, cfg.BootstrapAdminEmail, opts.Stdout)
	if keyFileWritten && (err != nil || !created) {
		_ = os.Remove(cfg.BootstrapAdminKeyFile) // a key for no one
	}
	if err != nil {
		return err
	}
	if created && keyFileWritten {
		log.Info("bootstrap admin API key written", "file", cfg.BootstrapAdminKeyFile, "email", cfg.BootstrapAdminEmail)
	}
	if !created && cfg.BootstrapAdminKey != "" {
		log.Info("database already initialised; --bootstrap-admin-key ignored")
	}
	mailer, err := notify.New(cfg.SMTPURL, cfg.MailFrom, log)
	if err != nil {
		return err
	}
	if !mailer.Enabled() {
		log.Warn("mail is disabled: no --smtp-url; failure and pause notifications will not be sent")
	}

	gl, hl := opts.GRPCListener, opts.HTTPListener
	if gl == nil {
		if gl, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return fmt.Errorf("--grpc-addr: %w", err)
		}
	}
	if hl == nil {
		if hl, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			_ = gl.Close()
			return fmt.Errorf("--http-addr: %w", err)
		}
	}

	if cfg.PprofAddr != "" {
		pl, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			_, _ = gl.Close(), hl.Close()
			return fmt.Errorf("--pprof-addr: %w", err)
		}
		defer pl.Close()
		go servePprof(pl, log)
	}

	if tlsf != nil {
		gl = tlsf.listener(gl, "h2")
		// HTTP/1.1 only, as on a plaintext listener: the same timeouts
		// and slow-client guards apply.
		hl = tlsf.listener(hl, "http/1.1")
	}

	// The gateway reaches the gRPC server in-process over bufconn, so every
	// REST call passes through the same interceptors (auth, audit) and the
	// gateway's x-forwarded-for can be trusted.
	inproc := bufconn.Listen(1 << 20)
	rec := auditlog.NewRecorder(d.Client, log).WithDialect(d.Dialect)
	mets := metrics.New()
	if err := backfillLastSuccess(ctx, d); err != nil {
		return err
	}
	mets.WatchSchedules(func(ctx context.Context) ([]metrics.ScheduleHealth, error) { return scheduleHealth(ctx, d) })
	runs := export.NewRunner(d, keys, mailer, rec, log, export.Config{
		AllowPrivateEndpoints: cfg.AllowPrivateEndpoints, RunnerID: ids.Process(), Local: cfg.LocalDirs(), StallTimeout: cfg.StallTimeout(),
		GCSChunkRetryDeadline: cfg.GCSChunkRetryDeadline, UploadConcurrency: cfg.UploadConcurrency,
		MaxManualRunsPerOrg: cfg.MaxManualRunsPerOrg, MaxManualRuns: cfg.MaxManualRuns,
		NotifyAllowedDomains: cfg.NotifyAllowedDomains,
	}).WithMetrics(mets)
	// A single SQLite process owns every run, so anything RUNNING at start
	// was orphaned by a crash; with PostgreSQL only stale heartbeats are.
	stale := cfg.OrphanAfter
	if d.Dialect == dialect.SQLite {
		stale = 0
	}
	if n, err := runs.RecoverOrphans(ctx, stale); err != nil {
		return fmt.Errorf("recover interrupted runs: %w", err)
	} else if n > 0 {
		log.Warn("marked interrupted export runs as failed", "runs", n)
	}
	trusted, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	server.WarmUp() // protobuf's lazy reflection data, built before the first concurrent requests
	icp := server.NewInterceptors(d.Client, rec, log, inproc.Addr().Network()).WithMetrics(mets).
		WithTrustedProxies(trusted).WithAuthFailureLimits(server.AuthFailureLimits{
		PerMinute: cfg.AuthFailuresPerMinute, AuditRows: cfg.AuthFailureAuditRows, Window: cfg.AuthFailureAuditWindow,
	})
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(icp.Unary),
		grpc.ChainStreamInterceptor(icp.Stream),
		grpc.MaxRecvMsgSize(4<<20),
		grpc.ForceServerCodecV2(server.Codec()),
	)
	wb := server.NewWorkbookService(d.Client, log)
	pb.RegisterIntegrationServiceServer(gs, server.NewIntegrationService(d.Client, keys, mailer, server.IntegrationConfig{
		AllowPrivateEndpoints: cfg.AllowPrivateEndpoints, Local: cfg.LocalDirs(), StallTimeout: cfg.StallTimeout(),
		IAMPrincipal: cfg.IAMPrincipal, GCSServiceAccount: cfg.GCSServiceAccount,
		AzureAppName: cfg.AzureAppName, AzureConsentURL: cfg.AzureConsentURL,
		NotifyAllowedDomains: cfg.NotifyAllowedDomains,
	}, log))
	pb.RegisterWorkbookServiceServer(gs, wb)
	pb.RegisterScheduleServiceServer(gs, server.NewScheduleService(d.Client, wb, runs, log).WithNotifyAllowedDomains(cfg.NotifyAllowedDomains))
	pb.RegisterAccountServiceServer(gs, server.NewAccountService(d.Client, log).WithSigningKeys(signing.New(d.Client, keys)))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	handler, closeGW, err := newHTTPHandler(ctx, inproc, hs, mets, cfg.CORSAllowedOrigins, httpLimits{trusted: trusted, bodyTimeout: cfg.HTTPReadTimeout,
		ready: d.SQL.PingContext})
	if err != nil {
		return err
	}
	defer closeGW()
	// No ReadTimeout or WriteTimeout: both stay armed while a handler runs
	// and would cut SendNow/WatchExportRun streams; request bodies get
	// their deadline in readBody instead.
	hsrv := &http.Server{Handler: handler, ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout, IdleTimeout: cfg.HTTPIdleTimeout}

	g, gctx := errgroup.WithContext(ctx)
	// Summaries of failed authentications beyond the audit budget.
	g.Go(func() error { icp.FlushAuthFailures(gctx); return nil })
	g.Go(func() error { return serveGRPC(gs, gl) })
	g.Go(func() error { return serveGRPC(gs, inproc) })
	g.Go(func() error {
		if err := hsrv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	log.Info("grpc listening", "addr", gl.Addr().String(), "tls", tlsf != nil)
	log.Info("http listening", "addr", hl.Addr().String(), "tls", tlsf != nil)
	log.Info("go runtime", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU())
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if opts.Ready != nil {
		opts.Ready(gl.Addr().String(), hl.Addr().String())
	}
	if cfg.Scheduler {
		disp := scheduler.NewDispatcher(d, runs, log, scheduler.DispatcherConfig{
			Tick: cfg.SchedulerTick, Slots: cfg.SchedulerSlots, RunnerID: ids.Process(),
		}, cfg.Clock()).WithMetrics(mets)
		g.Go(func() error { return disp.Run(gctx) })
		log.Info("scheduler started", "tick", cfg.SchedulerTick.String(), "slots", cfg.SchedulerSlots)
	}
	g.Go(func() error {
		notify.NewOutbox(d.Client, mailer, log).Run(gctx, outboxInterval)
		return nil
	})
	g.Go(func() error {
		retention.Loop(gctx, d, rec, retention.Config{RunHistory: cfg.RunHistoryRetention, AuditLog: cfg.AuditLogRetention},
			time.Hour, time.Now, log)
		return nil
	})
	g.Go(func() error {
		t := time.NewTicker(cfg.OrphanAfter / 2)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if n, err := runs.RecoverOrphans(gctx, cfg.OrphanAfter); err == nil && n > 0 {
					log.Warn("marked export runs of a stopped replica as failed", "runs", n)
				}
			}
		}
	})
	// Multipart uploads of finished runs that could not be aborted while
	// their store was down, found again after a restart (export.SweepUploads).
	g.Go(func() error { runs.SweepUploads(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
		// Tell load balancers first, then drain.
		hs.Shutdown()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.ShutdownGrace)
		defer cancel()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			gs.Stop()
		}
		if err := hsrv.Shutdown(sctx); err != nil {
			_ = hsrv.Close()
		}
		// No more calls: count the failed authentications of open windows.
		icp.CloseAuthFailures(sctx)
		// Runs still going are canceled: their uploads are aborted and they
		// end FAILED (INTERRUPTED) rather than staying RUNNING.
		runs.Close(sctx)
		return nil
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

func serveGRPC(gs *grpc.Server, l net.Listener) error {
	if err := gs.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
