package cli

import (
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

func openDB(c *cli.Context) (*store.DB, error) {
	return store.Open(c.Context, c.String("db"), nil)
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "install the sync tables and change tracking in an app database",
		Description: `Installs the morango_* tables, the profile and triggers that record every insert,
update and delete on the profile's tables. The app's tables are not changed; rows that exist
already become syncable. Running init again (same or updated profile) is safe.

Example:
   morango init --db school.sqlite3 --profile profile.json`,
		Flags: []cli.Flag{
			dbFlag,
			&cli.StringFlag{Name: "profile", Usage: "the profile `FILE` (see docs/profile.md)", Required: true},
		},
		Action: func(c *cli.Context) error {
			p, err := profile.Load(c.String("profile"))
			if err != nil {
				return &exitError{code: ExitFailure, err: err, hint: "fix the profile file (docs/profile.md describes it); nothing was installed"}
			}
			db, err := store.Init(c.Context, c.String("db"), p, nil)
			if err != nil {
				return err
			}
			defer db.Close()
			in, err := db.Instance(c.Context)
			if err != nil {
				return err
			}
			printf(c, "initialized %s for profile %s (%d models); instance %s (%s)\n",
				db.Path(), p.Name, len(p.Models), in.ID, in.Hash())
			return nil
		},
	}
}

func serializeCommand() *cli.Command {
	return &cli.Command{
		Name:  "serialize",
		Usage: "record the app's changes as new versions in the store",
		Description: `Export and import serialize first; this command does it on its own.

Example:
   morango serialize --db school.sqlite3`,
		Flags: []cli.Flag{dbFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			r, err := db.Serialize(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(out(c), r)
			}
			printf(c, "serialized: %d created, %d updated, %d deleted, %d hard-deleted", r.Created, r.Updated, r.Deleted, r.HardDeleted)
			if r.Failed > 0 {
				printf(c, "; %s could not be serialized (see morango status)", count(r.Failed, "row"))
			}
			printf(c, "\n")
			return nil
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the instance, counters, per-model counts, and unsynced or pending rows",
		Description: `Reads only; changes nothing.

Example:
   morango status --db school.sqlite3 --json`,
		Flags: []cli.Flag{dbFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := db.Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(out(c), st)
			}
			printf(c, "database  %s\nprofile   %s\ninstance  %s (%s), counter %d\n\n",
				st.Path, st.Profile, st.Instance.ID, st.Instance.Hash(), st.Instance.Counter)
			tw := tabwriter.NewWriter(out(c), 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "model\tapp rows\trecords\tdeleted\thard-deleted\tconflicts\tunserialized\tpending\t")
			for _, m := range st.Models {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", m.Model, m.AppRows, m.Records, m.Deleted, m.HardDeleted, m.Conflicts, m.Unserialized, m.Pending)
			}
			tw.Flush()
			printf(c, "\ncounters (what this database holds, per writer and partition):\n")
			for _, ct := range st.Counters {
				p := ct.Partition
				if p == "" {
					p = "(all)"
				}
				printf(c, "  %s  %-40s %d\n", ids.Proquint(ct.Instance), p, ct.Counter)
			}
			if len(st.Problems) > 0 {
				printf(c, "\nwhat could not be synced yet:\n")
				for _, p := range st.Problems {
					if p.Model == "" {
						printf(c, "  %s %s: %s\n", p.Stage, p.ID, p.Reason)
						continue
					}
					printf(c, "  %s %s %s: %s\n", p.Stage, p.Model, p.ID, p.Reason)
				}
			}
			return nil
		},
	}
}

func idCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "print the id the original Morango computes for a record",
		Description: `The id of a record of a model with a source-id template is
sha2_uuid(partition, source id, model): the partition with ${id} still in it.

Example:
   morango id --partition '${dataset_id}:user-rw:U' --source-id 'U:C' --model contentsummarylog`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "partition", Usage: "the partition, with ${id} where the template has it", Required: true},
			&cli.StringFlag{Name: "source-id", Usage: "the source id", Required: true},
			&cli.StringFlag{Name: "model", Usage: "the model name", Required: true},
		},
		Action: func(c *cli.Context) error {
			printf(c, "%s\n", ids.Namespaced(c.String("partition"), c.String("source-id"), c.String("model")))
			return nil
		},
	}
}

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "hard-delete rows: erase their data on every device they sync to",
		ArgsUsage: "ID...",
		Description: `A hard delete replaces every version of the record with an erased one; devices
that receive it delete the row and drop its data and conflicts. An app does the same with plain
SQL: INSERT INTO morango_harddeletedmodels (id, profile) VALUES (ID, PROFILE), then DELETE the row.

Example:
   morango delete --db school.sqlite3 --model facilityuser 9aadab7f946d31e740e2fae32fe94c58`,
		Flags: []cli.Flag{
			dbFlag,
			&cli.StringFlag{Name: "model", Usage: "the model of the rows", Required: true},
			&cli.BoolFlag{Name: "hard", Usage: "erase the data everywhere (the only kind of delete this command makes)", Value: true},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("delete: name at least one id")
			}
			if !c.Bool("hard") {
				return usagef("delete: --hard=false asks for a soft delete, which this command does not make: delete the row in the app, and the next serialization records the deletion")
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			for _, id := range c.Args().Slice() {
				if err := db.HardDelete(c.Context, c.String("model"), id); err != nil {
					return err
				}
				printf(c, "erased %s %s\n", c.String("model"), id)
			}
			return nil
		},
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
