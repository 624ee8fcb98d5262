package cron

import (
	"archive/zip"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const envZoneList = "AUDITEXPORT_TEST_ZONE_LIST" // set in the child: file of zone names to check

// TestZonesWithoutHostZoneinfo runs the zone checks in a child process that
// cannot see the host's zone database: ZONEINFO points nowhere, GOROOT is
// unset, and (where the test runs as root with unshare, as in CI) a private
// mount namespace hides /usr/share/zoneinfo behind an empty tmpfs. Every
// zone of Go's database must still parse and give the same next fire time
// as in this process, which reads the host's files.
func TestZonesWithoutHostZoneinfo(t *testing.T) {
	if os.Getenv(envZoneList) != "" {
		t.Skip("child process")
	}
	goroot := goroot(t)
	zones := goZones(t, goroot)
	want := make([]string, len(zones))
	for i, z := range zones {
		want[i] = z + " " + nextOf(t, z)
	}
	list := filepath.Join(t.TempDir(), "zones")
	if err := os.WriteFile(list, []byte(strings.Join(want, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{self, "-test.run=^TestChildZones$", "-test.v"}
	hidden := false
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("unshare"); err == nil {
			// Go falls back to $GOROOT/lib/time/zoneinfo.zip (the GOROOT
			// compiled into a binary built without -trimpath): hidden too.
			args = append([]string{"unshare", "-m", "sh", "-c",
				`mount -t tmpfs none /usr/share/zoneinfo && mount -t tmpfs none "$GOROOT_TIME" && exec "$@"`, "sh"}, args...)
			hidden = true
		}
	}
	if !hidden && os.Getenv("CI") != "" {
		t.Fatal("CI runs as root with unshare, to hide the host's zone database from the child")
	}
	cmd := exec.Command(args[0], args[1:]...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOROOT=") && !strings.HasPrefix(kv, "ZONEINFO=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "ZONEINFO=/nonexistent", envZoneList+"="+list, "GOROOT_TIME="+filepath.Join(goroot, "lib", "time"))
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestChildZones")) {
		t.Fatalf("child without the host's zoneinfo (hidden=%v): %v\n%s", hidden, err, out)
	}
	t.Logf("%d zones checked without the host's zone database (hidden by a mount namespace: %v)", len(zones), hidden)
}

// TestChildZones is the child of TestZonesWithoutHostZoneinfo.
func TestChildZones(t *testing.T) {
	list := os.Getenv(envZoneList)
	if list == "" {
		t.Skip("runs as the child of TestZonesWithoutHostZoneinfo")
	}
	if os.Geteuid() == 0 {
		for _, dir := range []string{"/usr/share/zoneinfo", os.Getenv("GOROOT_TIME")} {
			if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
				t.Fatalf("%s is visible (%d entries)", dir, len(entries))
			}
		}
	}
	raw, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		zone, want, _ := strings.Cut(line, " ")
		if got := nextOf(t, zone); got != want {
			t.Errorf("%s: next fire %s, want %s (as with the host's database)", zone, got, want)
		}
	}
}

// nextOf is the next 09:30 fire time after a fixed instant in zone.
func nextOf(t *testing.T, zone string) string {
	c, err := Parse("30 9 * * *", zone)
	if err != nil {
		t.Fatalf("Parse in %s: %v", zone, err)
	}
	return c.Next(time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC)).UTC().Format(time.RFC3339)
}

// goZones lists the zones of Go's own database ($GOROOT/lib/time/zoneinfo.zip,
// the data time/tzdata embeds).
func goZones(t *testing.T, goroot string) []string {
	zr, err := zip.OpenReader(filepath.Join(goroot, "lib", "time", "zoneinfo.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var zones []string
	for _, f := range zr.File {
		if !strings.HasSuffix(f.Name, "/") && f.Name != "Factory" && f.Name != "Local" {
			zones = append(zones, f.Name)
		}
	}
	if len(zones) < 400 {
		t.Fatalf("only %d zones in Go's database", len(zones))
	}
	return zones
}

func goroot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}
