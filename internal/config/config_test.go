package config

import (
	"strings"
	"testing"
	"time"
)

func TestLocalRootMapValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    map[string]string
		want string // substring of the error; "" for none
	}{
		{"own dir elsewhere", map[string]string{"org_a": "/srv/tenant-a"}, ""},
		{"its own default dir", map[string]string{"org_a": "/data/exports/org_a"}, ""},
		{"two separate dirs", map[string]string{"org_a": "/srv/a", "org_b": "/srv/b"}, ""},
		{"relative", map[string]string{"org_a": "srv/a"}, "must be an absolute directory"},
		{"filesystem root", map[string]string{"org_a": "/"}, "must be an absolute directory"},
		{"not an org id", map[string]string{"../x": "/srv/a"}, "is not an organization id"},
		{"another org's default dir", map[string]string{"org_a": "/data/exports/org_b"}, "overlaps --local-root"},
		{"the shared root", map[string]string{"org_a": "/data/exports"}, "overlaps --local-root"},
		{"above the root", map[string]string{"org_a": "/data"}, "overlaps --local-root"},
		{"nested in another", map[string]string{"org_a": "/srv/a", "org_b": "/srv/a/b"}, "contains"},
		{"same as another", map[string]string{"org_a": "/srv/a", "org_b": "/srv/a/"}, "contains"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", DataDir: "/data", LocalRootMap: tc.m}
			c.Complete()
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error with %q", err, tc.want)
			}
			if tc.want == "" {
				for org, dir := range tc.m {
					if got, err := c.LocalDirs().OrgDir(org); err != nil || got != dir {
						t.Errorf("OrgDir(%s) = %q, %v", org, got, err)
					}
				}
			}
		})
	}
}

// TestNumericFlagsValidation: negative sizes and retentions name their flag.
func TestNumericFlagsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"negative pool", func(c *Config) { c.DBMaxConns = -1 }, "--db-max-conns"},
		{"negative run history", func(c *Config) { c.RunHistoryRetention = -1 }, "--run-history-retention"},
		{"negative audit log", func(c *Config) { c.AuditLogRetention = -1 }, "--audit-log-retention"},
		{"orphan-after below the heartbeat's reach", func(c *Config) { c.OrphanAfter = 2 * time.Second }, "--orphan-after"},
		{"orphan-after negative", func(c *Config) { c.OrphanAfter = -time.Second }, "--orphan-after"},
		{"upload-concurrency negative", func(c *Config) { c.UploadConcurrency = -1 }, "--upload-concurrency"},
		{"upload-concurrency too high", func(c *Config) { c.UploadConcurrency = 1000 }, "--upload-concurrency"},
		{"upload-concurrency one", func(c *Config) { c.UploadConcurrency = 1 }, ""},
		{"orphan-after lowered", func(c *Config) { c.OrphanAfter = 5 * time.Second }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", DataDir: "/data", SchedulerTick: 1, SchedulerSlots: 1, DevClockScale: 1}
			tc.set(&c)
			c.Complete()
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
