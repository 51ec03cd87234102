package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/store"
)

// versionView is a version as the conflicts commands print it.
type versionView struct {
	Version  string          `json:"version"`
	Device   string          `json:"device"`
	Deleted  bool            `json:"deleted"`
	Data     json.RawMessage `json:"data"`
	Differs  []string        `json:"differs,omitempty"`
	Instance string          `json:"instance"`
	Counter  int64           `json:"counter"`
}

func viewOf(v merge.Version, shown map[string]json.RawMessage) versionView {
	vv := versionView{Version: store.VersionName(v), Device: ids.Proquint(v.Instance), Deleted: v.Deleted,
		Data: json.RawMessage(v.Serialized), Instance: v.Instance, Counter: v.Counter}
	if !json.Valid(vv.Data) {
		vv.Data, _ = json.Marshal(v.Serialized)
	}
	if shown != nil {
		vv.Differs = differingFields(shown, v.Serialized)
	}
	return vv
}

// differingFields lists the fields whose values differ between shown and
// the JSON object data, in name order.
func differingFields(shown map[string]json.RawMessage, data string) []string {
	var other map[string]json.RawMessage
	if json.Unmarshal([]byte(data), &other) != nil {
		return nil
	}
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(shown)) {
		if o, ok := other[k]; !ok || string(o) != string(shown[k]) {
			diff = append(diff, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(other)) {
		if _, ok := shown[k]; !ok {
			diff = append(diff, k)
		}
	}
	slices.Sort(diff)
	return diff
}

func conflictsCommand() *cli.Command {
	return &cli.Command{
		Name:  "conflicts",
		Usage: "list records whose concurrent versions lost a conflict",
		Description: `When two devices change the same record before hearing from each other, every
device shows the same winner (see docs/architecture.md, "Merging") and keeps the other versions.
This command lists them with the fields in which they differ from the shown one, and the
command that keeps one of them. Reads only; changes nothing.

Example:
   morango conflicts --db school.sqlite3 --model facilityuser`,
		Flags: []cli.Flag{dbFlag, jsonFlag,
			&cli.StringFlag{Name: "model", Usage: "only this `MODEL`"},
			&cli.BoolFlag{Name: "replaced", Usage: "list instead what this device replaced without a merge, kept here only"},
		},
		Action: func(c *cli.Context) error {
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			if c.Bool("replaced") {
				return printReplaced(c, db)
			}
			type view struct {
				Model     string        `json:"model"`
				ID        string        `json:"id"`
				Partition string        `json:"partition"`
				Shown     versionView   `json:"shown"`
				Lost      []versionView `json:"lost"`
			}
			list := []view{}
			n := 0
			err = db.Conflicts(c.Context, c.String("model"), func(cf store.Conflict) error {
				var shown map[string]json.RawMessage
				if json.Unmarshal([]byte(cf.Shown.Serialized), &shown) != nil {
					shown = map[string]json.RawMessage{}
				}
				v := view{Model: cf.Model, ID: cf.ID, Partition: cf.Partition, Shown: viewOf(cf.Shown, nil)}
				for _, l := range cf.Lost {
					v.Lost = append(v.Lost, viewOf(l, shown))
				}
				n++
				if c.Bool("json") {
					list = append(list, v)
					return nil
				}
				printf(c, "%s %s\n", v.Model, v.ID)
				printVersion(c, "shown", v.Shown)
				for _, l := range v.Lost {
					printVersion(c, "lost", l)
				}
				printf(c, "  keep one: morango resolve --db %s --record %s --keep VERSION\n\n", db.Path(), v.ID)
				return nil
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(out(c), list)
			}
			printf(c, "%s with conflicting versions\n", count(n, "record"))
			replaced := 0
			if err := db.Replaced(c.Context, c.String("model"), func(store.Replaced) error { replaced++; return nil }); err != nil {
				return err
			}
			if replaced > 0 {
				printf(c, "%s replaced on this device without a merge, kept here: morango conflicts --replaced --db %s\n",
					versionsOrChanges(replaced), db.Path())
			}
			return nil
		},
	}
}

// printReplaced lists the versions and app changes this device replaced
// without a merge (store.Replaced).
func printReplaced(c *cli.Context, db *store.DB) error {
	type view struct {
		store.Replaced
		Data json.RawMessage `json:"data"`
	}
	list := []view{}
	n := 0
	err := db.Replaced(c.Context, c.String("model"), func(r store.Replaced) error {
		n++
		v := view{Replaced: r, Data: json.RawMessage(r.Version.Serialized)}
		if !json.Valid(v.Data) {
			v.Data, _ = json.Marshal(r.Version.Serialized)
		}
		if c.Bool("json") {
			list = append(list, v)
			return nil
		}
		what := "version " + store.VersionName(r.Version) + " from " + ids.Proquint(r.Version.Instance)
		if r.Version.Instance == "" {
			what = "a change of the app that could not be synced"
		}
		if r.Version.Deleted {
			what += " (deleted)"
		}
		printf(c, "%s %s, replaced %s: %s\n        %s\n", r.Model, r.ID, r.LoggedAt, what, v.Data)
		return nil
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(out(c), list)
	}
	printf(c, "%s replaced on this device without a merge (kept here only; an app may write one back)\n", versionsOrChanges(n))
	return nil
}

// versionsOrChanges counts what conflicts --replaced lists.
func versionsOrChanges[N int | int64](n N) string {
	if n == 1 {
		return "1 version or change"
	}
	return fmt.Sprintf("%d versions or changes", n)
}

func printVersion(c *cli.Context, label string, v versionView) {
	state := ""
	if v.Deleted {
		state = " (deleted)"
	}
	printf(c, "  %-5s %s from %s%s\n", label, v.Version, v.Device, state)
	if v.Differs != nil {
		printf(c, "        differs in: %v\n", v.Differs)
	}
	printf(c, "        %s\n", v.Data)
}

func resolveCommand() *cli.Command {
	return &cli.Command{
		Name:  "resolve",
		Usage: "end a conflict by keeping one version of a record",
		Description: `Writes the kept version's data as a new version of this device, as an edit in
the app would, and updates the app's row. The decision travels with the next export and
supersedes the record's other versions on every device. VERSION is one that
morango conflicts lists (instance:counter; an instance prefix of 8 characters will do, and the
counter may be left out when the record holds one version of that instance).

Example:
   morango resolve --db school.sqlite3 --record 3f2a... --keep 5b1e0c7d:12`,
		Flags: []cli.Flag{dbFlag, jsonFlag,
			&cli.StringFlag{Name: "record", Usage: "the record's `ID`", Required: true},
			&cli.StringFlag{Name: "keep", Usage: "the `VERSION` to keep", Required: true},
		},
		Action: func(c *cli.Context) error {
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			r, err := db.Resolve(c.Context, c.String("record"), c.String("keep"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(out(c), map[string]any{
					"id": r.ID, "kept": viewOf(r.Kept, nil), "version": viewOf(r.Version, nil), "pending": r.Pending,
				})
			}
			printf(c, "%s now holds %s as version %s\n", r.ID, store.VersionName(r.Kept), store.VersionName(r.Version))
			if r.Pending != "" {
				fmt.Fprintf(c.App.ErrWriter, "the app's row is not updated yet: %s (see morango status)\n", r.Pending)
			}
			return nil
		},
	}
}
