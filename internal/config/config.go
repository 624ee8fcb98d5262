// Package config holds the server configuration: flags, AUDITEXPORT_* env
// variables, defaults and validation.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/auditexport/auditexport/internal/clientip"
	"github.com/auditexport/auditexport/internal/destination"
)

// Config is the configuration of `auditexport serve`. Every flag is also an
// environment variable AUDITEXPORT_<NAME> (e.g. AUDITEXPORT_GRPC_ADDR).
type Config struct {
	GRPCAddr              string            `name:"grpc-addr" env:"AUDITEXPORT_GRPC_ADDR" default:"127.0.0.1:9090" help:"gRPC listen address."`
	HTTPAddr              string            `name:"http-addr" env:"AUDITEXPORT_HTTP_ADDR" default:"127.0.0.1:8080" help:"REST gateway / health / OpenAPI listen address."`
	PprofAddr             string            `name:"pprof-addr" env:"AUDITEXPORT_PPROF_ADDR" help:"Serve Go's profiler (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (default: off). It has no authentication: never expose it beyond the host."`
	DB                    string            `name:"db" env:"AUDITEXPORT_DB" help:"Database: sqlite://<path> (default sqlite://<data-dir>/auditexport.db) or postgres://... for several replicas."`
	DBMaxConns            int               `name:"db-max-conns" env:"AUDITEXPORT_DB_MAX_CONNS" default:"0" help:"Database connections this process keeps open at most, all kept when idle (0: 8 on SQLite, 20 on PostgreSQL). Each scheduler slot and each concurrent request holds one while it writes."`
	DataDir               string            `name:"data-dir" env:"AUDITEXPORT_DATA_DIR" default:"./data" help:"Directory for the SQLite database, the master key and local exports."`
	BootstrapAdminKey     string            `name:"bootstrap-admin-key" env:"AUDITEXPORT_BOOTSTRAP_ADMIN_KEY" help:"On an empty database: the first admin's API key (format aek_<8>_<32>). Without it a key is generated and printed once."`
	BootstrapAdminKeyFile string            `name:"bootstrap-admin-key-file" env:"AUDITEXPORT_BOOTSTRAP_ADMIN_KEY_FILE" help:"On an empty database: read the first admin's key from this file, or generate one and write it there (0600) instead of printing it."`
	BootstrapAdminEmail   string            `name:"bootstrap-admin-email" env:"AUDITEXPORT_BOOTSTRAP_ADMIN_EMAIL" default:"admin@example.com" help:"On an empty database: the first admin's e-mail."`
	MasterKeyFile         string            `name:"master-key-file" env:"AUDITEXPORT_MASTER_KEY_FILE" help:"Key file that encrypts stored credentials (default <data-dir>/master.key, generated if absent)."`
	LocalRoot             string            `name:"local-root" env:"AUDITEXPORT_LOCAL_ROOT" help:"Each organization's LOCAL integrations must lie under <local-root>/<org id>/ (default <data-dir>/exports)."`
	LocalRootMap          map[string]string `name:"local-root-map" env:"AUDITEXPORT_LOCAL_ROOT_MAP" mapsep:"," help:"Per-organization LOCAL directories overriding <local-root>/<org id>: org_id=/abs/dir,..."`
	SMTPURL               string            `name:"smtp-url" env:"AUDITEXPORT_SMTP_URL" help:"SMTP server for notifications, e.g. smtp://127.0.0.1:1025. Without it mail is disabled."`
	MailFrom              string            `name:"mail-from" env:"AUDITEXPORT_MAIL_FROM" default:"auditexport@localhost" help:"From address of notifications."`
	CORSAllowedOrigins    []string          `name:"cors-allowed-origins" env:"AUDITEXPORT_CORS_ALLOWED_ORIGINS" help:"Origins allowed to call the REST API from a browser (default none)."`
	AllowPrivateEndpoints bool              `name:"allow-private-endpoints" env:"AUDITEXPORT_ALLOW_PRIVATE_ENDPOINTS" help:"Allow integration endpoints on loopback/private/link-local addresses (dev and tests)."`
	IAMPrincipal          string            `name:"iam-principal" env:"AUDITEXPORT_IAM_PRINCIPAL" help:"AWS principal that assumes customer roles (shown in View credentials)."`
	GCSServiceAccount     string            `name:"gcs-service-account" env:"AUDITEXPORT_GCS_SERVICE_ACCOUNT" help:"GCS service account to grant bucket access to (shown in View credentials)."`
	AzureAppName          string            `name:"azure-app-name" env:"AUDITEXPORT_AZURE_APP_NAME" help:"Azure application name (shown in View credentials)."`
	AzureConsentURL       string            `name:"azure-consent-url" env:"AUDITEXPORT_AZURE_CONSENT_URL" help:"Azure admin consent URL (shown in View credentials)."`
	LogLevel              string            `name:"log-level" env:"AUDITEXPORT_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level."`
	LogFormat             string            `name:"log-format" env:"AUDITEXPORT_LOG_FORMAT" default:"json" enum:"json,text" help:"Log format."`
	Scheduler             bool              `name:"scheduler" env:"AUDITEXPORT_SCHEDULER" default:"true" negatable:"" help:"Run the cron dispatcher in this process (--no-scheduler for API-only replicas)."`
	SchedulerTick         time.Duration     `name:"scheduler-tick" env:"AUDITEXPORT_SCHEDULER_TICK" default:"1s" help:"How often due schedules are looked for."`
	SchedulerSlots        int               `name:"scheduler-slots" env:"AUDITEXPORT_SCHEDULER_SLOTS" default:"4" help:"Scheduled exports this process runs at once."`
	RunHistoryRetention   time.Duration     `name:"run-history-retention" env:"AUDITEXPORT_RUN_HISTORY_RETENTION" default:"2160h" help:"Delete export runs that ended longer ago than this (each schedule's latest run is kept; 0 keeps all)."`
	AuditLogRetention     time.Duration     `name:"audit-log-retention" env:"AUDITEXPORT_AUDIT_LOG_RETENTION" default:"0" help:"Delete audit events older than this, except rows an incremental schedule has not exported yet (0, the default, keeps all)."`
	DevClockScale         float64           `name:"dev-clock-scale" env:"AUDITEXPORT_DEV_CLOCK_SCALE" default:"1" hidden:"" help:"Tests only: the scheduler's clock runs this many times faster than real time from --dev-clock-epoch."`
	DevClockEpoch         int64             `name:"dev-clock-epoch" env:"AUDITEXPORT_DEV_CLOCK_EPOCH" hidden:"" help:"Tests only: Unix seconds at which the scaled clock equals real time (all replicas of a test share it)."`
	TLSCertFile           string            `name:"tls-cert-file" env:"AUDITEXPORT_TLS_CERT_FILE" help:"PEM certificate (chain) to serve TLS with on both listeners; with --tls-key-file. Reloaded on SIGHUP."`
	TLSKeyFile            string            `name:"tls-key-file" env:"AUDITEXPORT_TLS_KEY_FILE" help:"PEM private key of --tls-cert-file. Reloaded on SIGHUP."`
	TLSClientCAFile       string            `name:"tls-client-ca-file" env:"AUDITEXPORT_TLS_CLIENT_CA_FILE" help:"PEM CA bundle: require client certificates signed by these CAs (mutual TLS) on both listeners. Reloaded on SIGHUP."`
	StorageStallTimeout   time.Duration     `name:"storage-stall-timeout" env:"AUDITEXPORT_STORAGE_STALL_TIMEOUT" default:"60s" help:"A storage request whose connection sends and receives nothing for this long (a store that stopped answering) fails as a transient error and is retried (0: no limit)."`
	GCSChunkRetryDeadline time.Duration     `name:"gcs-chunk-retry-deadline" env:"AUDITEXPORT_GCS_CHUNK_RETRY_DEADLINE" default:"32s" help:"How long the GCS client retries one chunk of an upload (8 MiB) before the run's attempt fails and the run's own retries take over (0: the client's default, 32s)."`
	UploadConcurrency     int               `name:"upload-concurrency" env:"AUDITEXPORT_UPLOAD_CONCURRENCY" default:"2" help:"Parts of one S3 or Azure upload sent at once (8 MiB each). Each running export holds about (N+1) x 8 MiB of buffers on S3: raise it for a distant store, at that cost in memory."`
	OrphanAfter           time.Duration     `name:"orphan-after" env:"AUDITEXPORT_ORPHAN_AFTER" default:"30s" help:"A run whose process wrote no heartbeat (every second) for this long is taken to belong to a stopped replica: a scheduled run is requeued, a Send now ends FAILED INTERRUPTED (PostgreSQL; checked every half of it)."`
	ShutdownGrace         time.Duration     `name:"shutdown-grace" env:"AUDITEXPORT_SHUTDOWN_GRACE" default:"30s" help:"How long in-flight requests may run after SIGTERM."`
	Limits                `embed:""`
}

// Limits bound what one caller (or an unauthenticated client) can make the
// server do; see docs/SECURITY.md.
type Limits struct {
	TrustedProxies         []string      `name:"trusted-proxies" env:"AUDITEXPORT_TRUSTED_PROXIES" help:"CIDRs (or IPs) of reverse proxies whose X-Forwarded-For is believed (default none: the socket peer is the client)."`
	MaxManualRunsPerOrg    int           `name:"max-manual-runs-per-org" env:"AUDITEXPORT_MAX_MANUAL_RUNS_PER_ORG" default:"4" help:"Send now runs one organization may have queued or running at once, counted over all replicas (0: no limit)."`
	MaxManualRuns          int           `name:"max-manual-runs" env:"AUDITEXPORT_MAX_MANUAL_RUNS" default:"16" help:"Send now runs this server process may have queued or running at once (0: no limit)."`
	NotifyAllowedDomains   []string      `name:"notify-allowed-domains" env:"AUDITEXPORT_NOTIFY_ALLOWED_DOMAINS" help:"E-mail domains schedules may notify besides the organization's users (default none)."`
	HTTPReadHeaderTimeout  time.Duration `name:"http-read-header-timeout" env:"AUDITEXPORT_HTTP_READ_HEADER_TIMEOUT" default:"10s" help:"How long a client may take to send an HTTP request's headers."`
	HTTPReadTimeout        time.Duration `name:"http-read-timeout" env:"AUDITEXPORT_HTTP_READ_TIMEOUT" default:"30s" help:"How long a client may take to send a REST request's body (responses, including streams, are not cut)."`
	HTTPIdleTimeout        time.Duration `name:"http-idle-timeout" env:"AUDITEXPORT_HTTP_IDLE_TIMEOUT" default:"2m" help:"How long an idle keep-alive HTTP connection stays open."`
	AuthFailuresPerMinute  int           `name:"auth-failures-per-minute" env:"AUDITEXPORT_AUTH_FAILURES_PER_MINUTE" default:"120" help:"Failed authentications one client IP may make per minute before it gets RESOURCE_EXHAUSTED (0: no limit)."`
	AuthFailureAuditRows   int           `name:"auth-failure-audit-rows" env:"AUDITEXPORT_AUTH_FAILURE_AUDIT_ROWS" default:"20" help:"AUDIT_LOGS rows per client IP and organization per minute for failed authentications; further failures are counted in one summary row (0: no limit)."`
	AuthFailureAuditWindow time.Duration `name:"auth-failure-audit-window" env:"AUDITEXPORT_AUTH_FAILURE_AUDIT_WINDOW" default:"1m" hidden:"" help:"Tests only: the window of --auth-failure-audit-rows."`
}

// Complete fills in defaults that depend on other fields.
func (c *Config) Complete() {
	if c.DevClockScale == 0 {
		c.DevClockScale = 1
	}
	if c.SchedulerTick == 0 {
		c.SchedulerTick = time.Second
	}
	if c.SchedulerSlots == 0 {
		c.SchedulerSlots = 4
	}
	if c.OrphanAfter == 0 {
		c.OrphanAfter = 30 * time.Second
	}
	if c.UploadConcurrency == 0 {
		c.UploadConcurrency = destination.DefaultUploadConcurrency
	}
	if c.AuthFailureAuditWindow == 0 {
		c.AuthFailureAuditWindow = time.Minute
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = 2 * time.Minute
	}
	if c.HTTPReadHeaderTimeout == 0 {
		c.HTTPReadHeaderTimeout = 10 * time.Second
	}
	if c.DB == "" {
		c.DB = "sqlite://" + filepath.Join(c.DataDir, "auditexport.db")
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	if c.LocalRoot == "" {
		c.LocalRoot = filepath.Join(c.DataDir, "exports")
	}
	if abs, err := filepath.Abs(c.LocalRoot); err == nil {
		c.LocalRoot = abs
	}
}

// Validate reports configuration errors, naming the flag.
func (c *Config) Validate() error {
	var errs []error
	for name, addr := range map[string]string{"--grpc-addr": c.GRPCAddr, "--http-addr": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, addr))
		}
	}
	if c.SMTPURL != "" {
		u, err := url.Parse(c.SMTPURL)
		if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Host == "" {
			errs = append(errs, errors.New("--smtp-url: want smtp://host:port or smtps://host:port"))
		}
	}
	for _, o := range c.CORSAllowedOrigins {
		u, err := url.Parse(o)
		if o != "*" && (err != nil || u.Scheme == "" || u.Host == "" || strings.TrimSuffix(u.Path, "/") != "") {
			errs = append(errs, fmt.Errorf("--cors-allowed-origins: %q is not an origin like https://app.example.com", o))
		}
	}
	if c.RunHistoryRetention < 0 || c.AuditLogRetention < 0 {
		errs = append(errs, errors.New("--run-history-retention and --audit-log-retention must be 0 (keep all) or positive"))
	}
	if c.DBMaxConns < 0 {
		errs = append(errs, errors.New("--db-max-conns must be 0 (the backend's default) or positive"))
	}
	if c.SchedulerTick <= 0 || c.SchedulerSlots <= 0 {
		errs = append(errs, errors.New("--scheduler-tick and --scheduler-slots must be positive"))
	}
	if c.DevClockScale <= 0 {
		errs = append(errs, errors.New("--dev-clock-scale must be positive"))
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("--trusted-proxies: %w", err))
	}
	if c.MaxManualRunsPerOrg < 0 || c.MaxManualRuns < 0 || c.AuthFailuresPerMinute < 0 || c.AuthFailureAuditRows < 0 {
		errs = append(errs, errors.New("--max-manual-runs-per-org, --max-manual-runs, --auth-failures-per-minute and --auth-failure-audit-rows must not be negative"))
	}
	for _, d := range c.NotifyAllowedDomains {
		if d == "" || strings.ContainsAny(d, "@/ ") || !strings.Contains(d, ".") {
			errs = append(errs, fmt.Errorf("--notify-allowed-domains: %q is not a domain like example.com", d))
		}
	}
	if c.HTTPReadHeaderTimeout < 0 || c.HTTPReadTimeout < 0 || c.HTTPIdleTimeout < 0 || c.AuthFailureAuditWindow < 0 {
		errs = append(errs, errors.New("--http-*-timeout and --auth-failure-audit-window must not be negative"))
	}
	errs = append(errs, c.validateLocalRootMap()...)
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		errs = append(errs, errors.New("--tls-cert-file and --tls-key-file: give both or neither"))
	case c.TLSClientCAFile != "" && c.TLSCertFile == "":
		errs = append(errs, errors.New("--tls-client-ca-file needs --tls-cert-file and --tls-key-file"))
	}
	if c.ShutdownGrace < 0 {
		errs = append(errs, errors.New("--shutdown-grace must not be negative"))
	}
	if c.OrphanAfter < 5*time.Second {
		errs = append(errs, errors.New("--orphan-after must be at least 5s (runs write a heartbeat every second)"))
	}
	if c.StorageStallTimeout < 0 {
		errs = append(errs, errors.New("--storage-stall-timeout must not be negative"))
	}
	if n := c.UploadConcurrency; n < 1 || n > destination.MaxUploadConcurrency {
		errs = append(errs, fmt.Errorf("--upload-concurrency must be between 1 and %d (got %d)", destination.MaxUploadConcurrency, n))
	}
	if d := c.GCSChunkRetryDeadline; d != 0 && d < time.Second {
		errs = append(errs, errors.New("--gcs-chunk-retry-deadline must be at least 1s (0: the GCS client's default)"))
	}
	return errors.Join(errs...)
}

// LocalDirs says where each organization's LOCAL destinations may lie.
func (c *Config) LocalDirs() destination.LocalDirs {
	return destination.LocalDirs{Root: c.LocalRoot, Map: c.LocalRootMap}
}

// validateLocalRootMap refuses mapped directories that would let one
// organization write into another's: relative ones, ones nested in each
// other, and ones inside --local-root other than the organization's own.
func (c *Config) validateLocalRootMap() []error {
	var errs []error
	contains := func(dir, sub string) bool {
		return dir == sub || strings.HasPrefix(sub, strings.TrimSuffix(dir, "/")+"/")
	}
	for org, dir := range c.LocalRootMap {
		switch {
		case !strings.HasPrefix(org, "org_") || strings.ContainsAny(org, "/\\ "):
			errs = append(errs, fmt.Errorf("--local-root-map: %q is not an organization id (org_...)", org))
			continue
		case !filepath.IsAbs(dir) || filepath.Clean(dir) == "/":
			errs = append(errs, fmt.Errorf("--local-root-map %s: %q must be an absolute directory below /", org, dir))
			continue
		}
		dir = filepath.Clean(dir)
		if root := c.LocalRoot; root != "" && (contains(dir, root) || (contains(root, dir) && dir != filepath.Join(root, org))) {
			errs = append(errs, fmt.Errorf("--local-root-map %s: %s overlaps --local-root %s", org, dir, root))
		}
		for other, odir := range c.LocalRootMap {
			if other != org && filepath.IsAbs(odir) && contains(dir, filepath.Clean(odir)) {
				errs = append(errs, fmt.Errorf("--local-root-map: %s of %s contains %s of %s", dir, org, odir, other))
			}
		}
	}
	return errs
}

// StallTimeout is --storage-stall-timeout as destination.OpenOptions takes
// it (0 there is the default; here it turns the limit off).
func (c *Config) StallTimeout() time.Duration {
	if c.StorageStallTimeout == 0 {
		return -1
	}
	return c.StorageStallTimeout
}

// TLS reports whether the listeners speak TLS.
func (c *Config) TLS() bool { return c.TLSCertFile != "" }

// Clock returns the scheduler's clock: real time, or with --dev-clock-scale a
// clock running faster from a shared epoch so tests can see many cron periods
// in a few seconds. Every replica given the same flags agrees on the time.
func (c *Config) Clock() func() time.Time {
	if c.DevClockScale == 1 {
		return time.Now
	}
	epoch := time.Unix(c.DevClockEpoch, 0)
	scale := c.DevClockScale
	return func() time.Time {
		return epoch.Add(time.Duration(float64(time.Since(epoch)) * scale))
	}
}
