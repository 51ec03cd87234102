// Package cli holds the morango commands: flags, progress display, exit codes
// and --json output. It contains no sync logic; every action calls the
// library packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes. They are documented in docs/cli.md.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// usageError marks a mistake in how a command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Run runs the command line args and returns the error of the command.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := newApp(stdout, stderr)
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") && args[1] != "help" && args[1] != "h" && app.Command(args[1]) == nil {
		return usagef("no command %q (see morango --help)", args[1])
	}
	err := app.RunContext(ctx, interspersed(app, args))
	// urfave/cli reports a missing required flag with an unexported error
	// type; it is a usage error all the same.
	// The same goes for an unknown subcommand, which urfave/cli reports as
	// a missing help topic with exit code 3.
	if err != nil && (strings.HasPrefix(err.Error(), "Required flag") || strings.HasPrefix(err.Error(), "No help topic")) {
		err = usageError{err}
	}
	return err
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "morango",
		Usage:                "sync SQLite databases between devices by signed bundle files",
		Version:              version(),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		// The default handler calls os.Exit inside Run and skips deferred
		// cleanup; main decides the exit code instead.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Commands: commands(),
	}
	onUsage(app.Commands)
	return app
}

func commands() []*cli.Command {
	return []*cli.Command{
		initCommand(),
		statusCommand(),
		verifyCommand(),
		serializeCommand(),
		deleteCommand(),
		idCommand(),
		certCommand(),
		exportCommand(),
		importCommand(),
		manifestCommand(),
		exchangeCommand(),
		forgetCommand(),
		inspectCommand(),
		conflictsCommand(),
		resolveCommand(),
		demoCommand(),
		benchCommand(),
		completionCommand(),
	}
}

// onUsage makes flag errors of every command usage errors.
func onUsage(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
		onUsage(c.Subcommands)
	}
}

// ExitCode prints err (with its hints) to stderr and returns the process's
// exit code.
func ExitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ue usageError
	if !errors.As(err, &ue) && (ctx.Err() != nil || errors.Is(err, context.Canceled)) {
		// Every write is a transaction: what finished is kept whole, and
		// the step under way left nothing behind.
		fmt.Fprintf(stderr, "morango: interrupted (%v)\n", err)
		fmt.Fprintf(stderr, "hint: what was applied is kept whole, and nothing is half-applied; run the same command again to finish\n")
		return ExitInterrupted
	}
	fmt.Fprintf(stderr, "morango: %v\n", err)
	var h interface{ Hint() string }
	switch {
	case errors.As(err, &h) && h.Hint() != "":
		fmt.Fprintf(stderr, "hint: %s\n", h.Hint())
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "hint: add --help to the command for its flags and an example (morango --help lists the commands)\n")
	}
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var ce interface{ ExitCode() int }
	if errors.As(err, &ce) {
		return ce.ExitCode()
	}
	return ExitFailure
}

// version is the module's version and, for a build from a clone, its
// commit, as the Go toolchain recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (commit " + s.Value[:12] + ")"
		}
	}
	return v
}
