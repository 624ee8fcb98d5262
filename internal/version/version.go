// Package version says which build of auditexport / auditctl is running.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is stamped by release builds (make dist):
//
//	go build -ldflags "-X github.com/auditexport/auditexport/internal/version.Version=v1.2.3"
//
// Without it, String falls back to what the Go toolchain recorded.
var Version string

// String is the stamped version, else the module version or VCS revision
// recorded in the binary, else "dev".
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + rev + dirty
}

// Long is what `version` and `--version` print: the version (String), the
// VCS commit and its time when the toolchain recorded them, and the Go
// version and platform the binary was built with.
func Long(program string) string {
	out := program + " " + String()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	var rev, when string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		}
	}
	if rev != "" {
		out += "\ncommit " + rev
		if when != "" {
			out += " (" + when + ")"
		}
	}
	return out + "\n" + bi.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}
