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

	"github.com/auditexport/auditexport/internal/destination"
)

// Config is the configuration of `auditexport serve`. Every flag is also an
// environment variable AUDITEXPORT_<NAME> (e.g. AUDITEXPORT_GRPC_ADDR).
type Config struct {
	GRPCAddr              string            `name:"grpc-addr" env:"AUDITEXPORT_GRPC_ADDR" default:"127.0.0.1:9090" help:"gRPC listen address."`
	HTTPAddr              string            `name:"http-addr" env:"AUDITEXPORT_HTTP_ADDR" default:"127.0.0.1:8080" help:"REST gateway / health / OpenAPI listen address."`
	DB                    string            `name:"db" env:"AUDITEXPORT_DB" help:"Database: sqlite://<path> (default sqlite://<data-dir>/auditexport.db) or postgres://... for several replicas."`
	DataDir               string            `name:"data-dir" env:"AUDITEXPORT_DATA_DIR" default:"./data" help:"Directory for the SQLite database, the master key and local exports."`
	BootstrapAdminKey     string            `name:"bootstrap-admin-key" env:"AUDITEXPORT_BOOTSTRAP_ADMIN_KEY" help:"On an empty database: the first admin's API key (format aek_<8>_<32>). Without it a key is generated and printed once."`
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
	DevClockScale         float64           `name:"dev-clock-scale" env:"AUDITEXPORT_DEV_CLOCK_SCALE" default:"1" hidden:"" help:"Tests only: the scheduler's clock runs this many times faster than real time from --dev-clock-epoch."`
	DevClockEpoch         int64             `name:"dev-clock-epoch" env:"AUDITEXPORT_DEV_CLOCK_EPOCH" hidden:"" help:"Tests only: Unix seconds at which the scaled clock equals real time (all replicas of a test share it)."`
	ShutdownGrace         time.Duration     `name:"shutdown-grace" env:"AUDITEXPORT_SHUTDOWN_GRACE" default:"30s" help:"How long in-flight requests may run after SIGTERM."`
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
	if c.SchedulerTick <= 0 || c.SchedulerSlots <= 0 {
		errs = append(errs, errors.New("--scheduler-tick and --scheduler-slots must be positive"))
	}
	if c.DevClockScale <= 0 {
		errs = append(errs, errors.New("--dev-clock-scale must be positive"))
	}
	errs = append(errs, c.validateLocalRootMap()...)
	if c.ShutdownGrace < 0 {
		errs = append(errs, errors.New("--shutdown-grace must not be negative"))
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
