package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// runEnded means the outcome was printed already (a run that ended FAILED
// or CANCELED, a run that could not be followed to its end, a failed
// probe): exit non-zero without another message.
type runEnded struct{}

func (runEnded) Error() string { return "run ended unsuccessfully" }

type progressFlags struct {
	Progress string `name:"progress" enum:"auto,bar,lines" default:"auto" help:"auto (a bar on a terminal, lines otherwise), bar or lines."`
}

// view shows the progress messages of one run.
type view interface {
	update(p *pb.ExportProgress)
	// stop ends the display (the bar's line) before the summary is printed.
	stop()
	runID() string
}

// newView picks the display: -o json streams the messages as NDJSON
// (as the REST API does), a terminal gets a redrawing bar, and anything
// else (pipes, CI logs) one plain line per message, which stays readable
// where carriage returns would pile up.
func (e *env) newView(mode string) view {
	switch {
	case e.out.kind == outJSON:
		return &jsonView{w: e.stdout}
	case e.out.kind == outValue:
		return &lineView{w: e.stderr} // stdout carries only the values
	case mode == "bar" || (mode == "auto" && e.tty):
		return newBarView(e.stdout)
	}
	return &lineView{w: e.stdout}
}

type lastRun struct{ id string }

func (l *lastRun) note(p *pb.ExportProgress) {
	if l.id == "" {
		l.id = p.GetRunId()
	}
}

func (l *lastRun) runID() string { return l.id }

type lineView struct {
	lastRun
	w io.Writer
}

func (v *lineView) update(p *pb.ExportProgress) {
	v.note(p)
	line := fmt.Sprintf("%-10s rows=%d bytes=%d", phaseName(p.GetPhase()), p.GetRowsExported(), p.GetBytesUploaded())
	if p.GetTotalRows() > 0 {
		line += fmt.Sprintf(" total_rows=%d", p.GetTotalRows())
	}
	fmt.Fprintln(v.w, line)
}

func (v *lineView) stop() {}

type jsonView struct {
	lastRun
	w io.Writer
}

func (v *jsonView) update(p *pb.ExportProgress) {
	v.note(p)
	b, _ := stableJSON(p, "")
	fmt.Fprintf(v.w, "%s\n", b)
}

func (v *jsonView) stop() {}

// barView redraws one line: phase and bytes on the left, then rows
// against total_rows (percent and ETA once the server knows the total; a
// spinner before), the row rate and the elapsed time.
type barView struct {
	lastRun
	w   io.Writer
	bar *progressbar.ProgressBar
	max int64
}

func newBarView(w io.Writer) *barView {
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-10s", "STARTING")),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		// Redraw on our messages only: the spinner's own ticker would
		// write from another goroutine after the summary.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetRenderBlankState(true),
	)
	return &barView{w: w, bar: bar, max: -1}
}

func (v *barView) update(p *pb.ExportProgress) {
	v.note(p)
	rows := p.GetRowsExported()
	// total_rows is an estimate: never let the bar fill (and freeze) early.
	if want := max(p.GetTotalRows(), rows); p.GetTotalRows() > 0 && want != v.max {
		v.max = want
		v.bar.ChangeMax64(want)
	}
	_ = v.bar.Set64(rows)
	v.bar.Describe(fmt.Sprintf("%-10s %10s", phaseName(p.GetPhase()), humanBytes(p.GetBytesUploaded())))
}

func (v *barView) stop() {
	_ = v.bar.Exit()
	fmt.Fprintln(v.w)
}

func phaseName(p pb.ExportPhase) string {
	return trimEnum(p.Descriptor(), p.String())
}

// finishFollow prints how a followed run ended and turns FAILED/CANCELED
// into a non-zero exit; when following broke off after the run had
// started, it prints the error and how to go on following the run.
func (e *env) finishFollow(v view, run *pb.ExportRun, err error) error {
	v.stop()
	if err != nil {
		if v.runID() == "" {
			return err
		}
		// Whatever broke (an interrupt, a server gone for too long), the
		// run goes on: say which one, so that a script does not start a
		// second export but follows this one.
		fmt.Fprint(e.stderr, formatError(err, e.g.Addr))
		e.notef("run %s goes on on the server; follow it with: auditctl runs watch %s", v.runID(), v.runID())
		return runEnded{}
	}
	switch e.out.kind {
	case outValue:
		if err := printValues(e.stdout, &pb.GetExportRunResponse{Run: run}, e.out.paths); err != nil {
			return err
		}
	case outTable:
		printSummary(e.stdout, run)
	}
	if ee := run.GetError(); ee != nil && (ee.GetCode() != "" || ee.GetMessage() != "") {
		fmt.Fprintf(e.stderr, "error: %s: %s\n", ee.GetCode(), ee.GetMessage())
		if ee.GetProviderMessage() != "" {
			fmt.Fprintf(e.stderr, "provider message: %s\n", ee.GetProviderMessage())
		}
	}
	switch run.GetState() {
	case pb.RunState_RUN_STATE_FAILED, pb.RunState_RUN_STATE_CANCELED:
		return runEnded{}
	}
	return nil
}

func printSummary(w io.Writer, run *pb.ExportRun) {
	took := ""
	if run.GetStartTime() != nil && run.GetFinishTime() != nil {
		took = " in " + run.GetFinishTime().AsTime().Sub(run.GetStartTime().AsTime()).Round(10*time.Millisecond).String()
	}
	fmt.Fprintf(w, "%s %s: %d rows, %s%s\n", trimEnum(run.GetState().Descriptor(), run.GetState().String()),
		run.GetId(), run.GetRows(), humanBytes(run.GetBytes()), took)
	if run.GetObjectUri() != "" && run.GetState() == pb.RunState_RUN_STATE_SUCCEEDED {
		fmt.Fprintf(w, "object: %s\n", run.GetObjectUri())
	}
	if run.GetNote() != "" {
		fmt.Fprintf(w, "note: %s\n", run.GetNote())
	}
}
