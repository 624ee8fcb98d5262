package app

import (
	"context"
	"log/slog"

	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/schedules"
)

// Migrations are the data migrations between schema versions (see
// db.SchemaVersion), run by db.Migrate once on a database older than
// their version. Every binary that opens the database (serve and the
// operator commands) passes them, so whichever starts first migrates.
func Migrations(d *db.DB, log *slog.Logger) []db.Step {
	return []db.Step{{
		Version: 2,
		Name:    "schedule crons keep their fire times under cronie day-field rules",
		Run: func(ctx context.Context) error {
			rec := auditlog.NewRecorder(d.Client, log).WithDialect(d.Dialect)
			_, err := schedules.KeepLegacyCrons(ctx, d.Client, rec, log)
			return err
		},
	}}
}
