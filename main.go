// Command morango keeps SQLite databases in sync across devices that are
// rarely or never online together, by signed bundle files carried on a stick.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/morango-sync/morango/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	// ExitCode tells an interruption by ctx.Err(), so ctx is stopped after.
	code := cli.ExitCode(ctx, err, os.Stderr)
	stop()
	os.Exit(code)
}
