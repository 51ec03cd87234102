// Package cli holds the morango commands: flags, progress display, exit codes
// and --json output. It contains no sync logic; every action calls the
// library packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

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
	return app.RunContext(ctx, interspersed(app, args))
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "morango",
		Usage:                "sync SQLite databases between devices by signed bundle files",
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
	return app
}

func commands() []*cli.Command {
	return []*cli.Command{
		initCommand(),
		statusCommand(),
		serializeCommand(),
		deleteCommand(),
		idCommand(),
		certCommand(),
		exportCommand(),
		importCommand(),
		manifestCommand(),
		exchangeCommand(),
		inspectCommand(),
		demoCommand(),
	}
}

// ExitCode prints err (with its hints) to stderr and returns the process's
// exit code.
func ExitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "morango: %v\n", err)
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		fmt.Fprintf(stderr, "hint: %s\n", h.Hint())
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return ExitInterrupted
	}
	var ce interface{ ExitCode() int }
	if errors.As(err, &ce) {
		return ce.ExitCode()
	}
	return ExitFailure
}
