// Command auditexport is the auditexport server and its operator commands.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/auditexport/auditexport/internal/app"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/config"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/version"

	"github.com/auditexport/auditexport/ent/organization"
)

// dbFlags are shared by the operator commands that open the database directly.
type dbFlags struct {
	DB      string `name:"db" env:"AUDITEXPORT_DB" help:"Database DSN (default sqlite://<data-dir>/auditexport.db)."`
	DataDir string `name:"data-dir" env:"AUDITEXPORT_DATA_DIR" default:"./data" help:"Data directory."`
}

func (f dbFlags) open(ctx context.Context) (*db.DB, error) {
	dsn := f.DB
	if dsn == "" {
		dsn = "sqlite://" + filepath.Join(f.DataDir, "auditexport.db")
	}
	d, err := db.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, app.Migrations(d, slog.New(slog.NewJSONHandler(os.Stderr, nil)))...); err != nil {
		_ = d.Close()
		return nil, err
	}
	if err := app.EnsureBuiltins(ctx, d); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

type serveCmd struct {
	config.Config
}

func (c *serveCmd) Run(ctx context.Context) error {
	return app.Run(ctx, c.Config, app.Options{})
}

type orgCreateCmd struct {
	dbFlags
	Name       string `name:"name" required:"" help:"Organization name."`
	AdminEmail string `name:"admin-email" default:"admin@example.com" help:"E-mail of the organization's first ADMIN."`
}

func (c *orgCreateCmd) Run(ctx context.Context) error {
	d, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := app.Bootstrap(ctx, d, "", c.AdminEmail, os.Stderr); err != nil {
		return err
	}
	id, key, err := app.CreateOrg(ctx, d, c.Name, c.AdminEmail)
	if err != nil {
		return err
	}
	fmt.Printf("organization %s (%s) created; admin %s API key:\n%s\n", c.Name, id, c.AdminEmail, key)
	return nil
}

type seedCmd struct {
	dbFlags
	Events int           `name:"events" required:"" help:"Number of synthetic audit events to append."`
	Span   time.Duration `name:"span" default:"720h" help:"Spread request times over this period before now."`
	Seed   uint64        `name:"seed" default:"1" help:"Random seed (same seed, same events)."`
}

func (c *seedCmd) Run(ctx context.Context) error {
	if c.Events <= 0 {
		return fmt.Errorf("--events must be positive")
	}
	d, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := app.Bootstrap(ctx, d, "", "admin@example.com", os.Stdout); err != nil {
		return err
	}
	org, err := d.Client.Organization.Query().Where(organization.IsDefault(true)).Only(tenant.System(ctx))
	if err != nil {
		return fmt.Errorf("find default organization: %w", err)
	}
	start := time.Now()
	if err := auditlog.Seed(ctx, d, org.ID, c.Events, time.Now().UTC(), c.Span, c.Seed); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Printf("seeded %d events into %s in %s (%.0f events/s)\n", c.Events, org.ID, el.Round(time.Millisecond), float64(c.Events)/el.Seconds())
	return nil
}

type cli struct {
	Serve serveCmd `cmd:"" help:"Run the server (gRPC + REST gateway)."`
	Org   struct {
		Create orgCreateCmd `cmd:"" help:"Create an organization and print its admin API key (last line)."`
	} `cmd:"" help:"Manage organizations."`
	Seed  seedCmd `cmd:"" help:"Append realistic synthetic audit events to the default organization."`
	Admin struct {
		Key struct {
			Create adminKeyCreateCmd `cmd:"" help:"Give an ADMIN a new API key (recovery by the operator; audited). The key is the last line."`
		} `cmd:"" help:"API keys."`
	} `cmd:"" help:"Operator recovery commands."`
	Backup backupCmd `cmd:"" help:"Write a consistent copy of the (running) SQLite database to a new file."`
	Keys   struct {
		Add    keysAddCmd    `cmd:"" help:"Add a fresh master key at the top of the key file (the active key for new credentials)."`
		Rotate keysRotateCmd `cmd:"" help:"Re-encrypt every stored credential under the active (first) master key; prints how many rows it touched."`
		Status keysStatusCmd `cmd:"" help:"List the master keys and how many stored credentials each encrypts; fails if some use a key the file lacks."`
	} `cmd:"" help:"Manage the master keys that encrypt stored credentials."`
	Version     versionCmd       `cmd:"" help:"Print the version of this binary (version, commit, Go version)."`
	VersionFlag kong.VersionFlag `name:"version" help:"Print the version and exit."`
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println(version.Long("auditexport"))
	return nil
}

func main() {
	if err := realMain(); err != nil {
		fmt.Fprintln(os.Stderr, "auditexport:", err)
		os.Exit(1)
	}
}

func realMain() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var c cli
	k := kong.Parse(&c, kong.Name("auditexport"), kong.Description("Exports an organization's audit log to its own cloud storage."),
		kong.UsageOnError(), kong.BindTo(ctx, (*context.Context)(nil)), kong.Vars{"version": version.Long("auditexport")})
	return k.Run()
}
