package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/internal/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure serialize, export and import against the floor of plain SQL inserts",
		Description: `Generates N rows of the sample school app on device A with plain SQL, then measures in
one run: the floor (the same rows inserted into empty tables, one transaction, prepared statements),
serialize, export, import on device B, an export when B has everything, and an export and import
after 1% of the rows changed. Prints seconds, records/s, ratio to the floor, bundle bytes per record
and peak memory. See docs/performance.md.

Example:
   morango bench --records 100000`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "records", Value: 10000, Usage: "app rows to generate"},
			&cli.IntFlag{Name: "runs", Value: 1, Usage: "repeat on fresh devices and report medians"},
			&cli.StringFlag{Name: "dir", Usage: "the `FOLDER` for the devices (default: a temporary folder)"},
			&cli.StringFlag{Name: "cpuprofile-dir", Usage: "write a CPU profile of each stage into `FOLDER`"},
			&cli.BoolFlag{Name: "statements", Usage: "list the store's statements that took each stage longest"},
			&cli.IntFlag{Name: "page-size", Usage: "create the sample app's databases with pages of `BYTES` (default: SQLite's, 4096)"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			opts := bench.Options{Records: c.Int("records"), Runs: c.Int("runs"), Dir: c.String("dir"),
				Keep: c.String("dir") != "", Seed: 1, ProfileDir: c.String("cpuprofile-dir"),
				Statements: c.Bool("statements"), PageSize: c.Int("page-size")}
			if !c.Bool("json") {
				opts.Log = func(format string, args ...any) { fmt.Fprintf(c.App.ErrWriter, format+"\n", args...) }
			}
			r, err := bench.Run(c.Context, opts)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return bench.WriteJSON(out(c), r)
			}
			return bench.WriteTable(out(c), r)
		},
	}
}
