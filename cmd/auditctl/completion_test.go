package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestVersionAndCompletion: --version and `version` print the version and
// the Go version; `completion <shell>` prints a script that makes the shell
// call auditctl back with COMP_LINE set, and such a call lists the
// subcommands that complete the line.
func TestVersionAndCompletion(t *testing.T) {
	isolateEnv(t)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := run("", args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "auditctl ") || !strings.Contains(r.stdout, runtime.Version()) {
			t.Errorf("auditctl %v: %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
	for shell, want := range map[string]string{"bash": "complete -C", "zsh": "bashcompinit", "fish": "COMP_LINE"} {
		r := run("", "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: %d %q %q", shell, r.code, r.stdout, r.stderr)
		}
	}
	if r := run("", "completion", "powershell"); r.code != exitUsage {
		t.Errorf("completion powershell: exit %d, want %d", r.code, exitUsage)
	}
	t.Setenv("COMP_LINE", "auditctl sch")
	r := run("")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "schedules" {
		t.Errorf("completing %q: %d %q %q", "auditctl sch", r.code, r.stdout, r.stderr)
	}
	t.Setenv("COMP_LINE", "auditctl schedules send")
	if r := run(""); !strings.Contains(r.stdout, "send-now") {
		t.Errorf("completing %q: %q", "auditctl schedules send", r.stdout)
	}
}
