// Command auditctl is the command line of auditexport: every RPC of the
// four services over the Go client (clients/go), with table or JSON output,
// live progress for exports and readable errors.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"
	"golang.org/x/term"

	"github.com/auditexport/auditexport/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses: scripts tell a refused call from a typo in the command.
const (
	exitOK    = 0
	exitError = 1 // the API refused the call, or an export ended FAILED/CANCELED
	exitUsage = 2 // bad command line or configuration
)

// exitRequest carries kong's exit (after --help) out of the parser without
// ending the process, so realMain stays callable from tests.
type exitRequest struct{ code int }

// realMain runs one command. Everything it touches comes in as arguments
// (the environment is read through os.LookupEnv, as kong does).
func realMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	cli := &CLI{}
	files, err := loadConfigFile(args)
	if err != nil {
		fmt.Fprintln(stderr, "auditctl:", err)
		return exitUsage
	}
	parser, err := kong.New(cli,
		kong.Name("auditctl"),
		kong.Description("Command line for the auditexport API (integrations, workbooks, schedules, runs, users, API keys)."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
		kong.Writers(stdout, stderr),
		kong.Exit(func(c int) { panic(exitRequest{c}) }),
		kong.Vars{"default_config": files.defaultPath, "version": version.Long("auditctl")},
		kong.Resolvers(files.resolver()),
	)
	if err != nil {
		fmt.Fprintln(stderr, "auditctl:", err)
		return exitUsage
	}
	defer func() {
		if r := recover(); r != nil {
			ex, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			code = ex.code
		}
	}()
	// A shell asking for completions (COMP_LINE set; see `auditctl
	// completion`) is answered and the process ends here.
	kongplete.Complete(parser)
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, "auditctl:", err)
		return exitUsage
	}
	e := &env{
		ctx:    ctx,
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
		g:      &cli.Globals,
		files:  files,
		given:  givenFlags(kctx),
		tty:    isTerminal(stdout),
	}
	if err := e.setup(); err != nil {
		fmt.Fprintln(stderr, "auditctl:", err)
		return exitUsage
	}
	defer e.close()
	err = kctx.Run(e)
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "auditctl:", ue.Error())
		return exitUsage
	}
	var re runEnded
	if errors.As(err, &re) {
		return exitError // the run's summary and error were printed already
	}
	fmt.Fprint(stderr, formatError(err, e.g.Addr))
	return exitError
}

// givenFlags lists the flags set on the command line (not by env, config
// file or default): update commands build their FieldMask from it, so only
// what the user typed is changed.
func givenFlags(kctx *kong.Context) map[string]bool {
	given := map[string]bool{}
	for _, p := range kctx.Path {
		if p.Flag != nil && !p.Resolved {
			given[p.Flag.Name] = true
		}
	}
	return given
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// usageError is a mistake in the command line found after parsing (e.g. a
// missing credential); it exits with exitUsage like kong's own errors.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }
