package integration_test

import (
	"bytes"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyRows makes the export take a few seconds on the -race server, so the
// bar has several progress messages to redraw on.
const ptyRows = 100_000

// TestAuditctlSendNowPTY runs `auditctl schedules send-now` on a pseudo
// terminal, as a person would, and checks that the progress bar redraws in
// place (carriage returns, frames with growing row counts against the
// known total, a rate and an ETA) and ends with the SUCCEEDED summary.
func TestAuditctlSendNowPTY(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	seedEvents(t, s, ptyRows)
	c := newCtl(t, s)
	dest := "file://" + s.LocalDir("", "pty") + "/"
	c.ok("integrations", "create", "--name", "pty_local", "--provider", "local", "--destination", dest)
	wb := c.value("id", "workbooks", "explore")
	c.ok("workbooks", "save-as", wb, "--name", "pty")
	sch := c.value("id", "schedules", "create", "--workbook", wb, "--name", "pty", "--integration", "pty_local",
		"--uri", dest+"all-{run_id}.csv", "--cron", "0 0 1 1 *")

	cmd := exec.Command(auditctlBin(t), "schedules", "send-now", sch)
	cmd.Env = c.env
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var buf bytes.Buffer
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(&buf, ptmx) // ends with EIO once the child has exited
		close(copied)
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("send-now on a pty did not end")
	}
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
		t.Fatal("pty output did not end")
	}
	out := buf.String()
	if err != nil {
		t.Fatalf("send-now on a pty: %v\n%q", err, out)
	}

	if strings.Contains(out, "rows=") {
		t.Errorf("plain progress lines on a terminal:\n%q", out)
	}
	if n := strings.Count(out, "\r"); n < 10 {
		t.Errorf("only %d carriage returns: the bar does not redraw:\n%q", n, out)
	}
	// Frames with a known total: "(rows/total, rate rows/s)".
	frame := regexp.MustCompile(`\((\d+)/(\d+), [\d.]+ rows/s\)`)
	var counts []int
	total := 0
	for _, m := range frame.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		total, _ = strconv.Atoi(m[2])
		if len(counts) == 0 || counts[len(counts)-1] != n {
			counts = append(counts, n)
		}
	}
	if total < ptyRows {
		t.Fatalf("no frame against a total of at least %d rows:\n%q", ptyRows, out)
	}
	partial := 0
	for i, n := range counts {
		if i > 0 && n < counts[i-1] {
			t.Errorf("row counts go back: %v", counts)
		}
		if n > 0 && n < total {
			partial++
		}
	}
	if partial < 3 || counts[len(counts)-1] != total {
		t.Errorf("want at least 3 frames in between and a last one at %d rows; row counts: %v", total, counts)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`UPLOADING +[\d.]+ [KMG]iB +\d+% \|`), // phase, bytes, percent, bar
		regexp.MustCompile(`\[[\dhms]+:[\dhms]+\]`),              // elapsed:ETA
		regexp.MustCompile(`100% \|`),                            // the full bar
		regexp.MustCompile(`\nSUCCEEDED run_[a-z0-9]+: ` + strconv.Itoa(total) + ` rows, [\d.]+ MiB in [\dhms.]+\r?\n`),
		regexp.MustCompile(`object: file://\S+/exports/org_[a-z0-9]+/pty/all-run_[a-z0-9]+\.csv\r?\n$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("pty output does not match %s:\n%q", want, out)
		}
	}
}
