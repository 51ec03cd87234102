// Command morango keeps SQLite databases in sync across devices that are
// rarely or never online together, by signed bundle files carried on a stick.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/morango-sync/morango/internal/cli"
)

// memoryLimit is the Go runtime's soft memory limit, unless GOMEMLIMIT
// sets another. An export or import keeps about 40 MiB live (a bundle
// chunk, the compressor's window and a few batches of records); without a
// limit the collector lets the heap grow to twice that between cycles, on
// devices that often have little memory to spare. SQLite's own memory is
// outside it. docs/performance.md gives the measurements.
const memoryLimit = 64 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	// ExitCode tells an interruption by ctx.Err(), so ctx is stopped after.
	code := cli.ExitCode(ctx, err, os.Stderr)
	stop()
	os.Exit(code)
}
