package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/session"
	"github.com/morango-sync/morango/store"
)

var (
	certFlag   = &cli.StringFlag{Name: "cert", Usage: "the `ID` of a certificate this device holds the key of (needed only when it holds several)"}
	quietFlag  = &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"}
	filterFlag = &cli.StringSliceFlag{Name: "filter", Usage: "partition `PREFIX`es to narrow what is sent (repeat or comma-separate)"}
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a signed bundle of what a peer lacks",
		Description: `Serializes the app's changes, then writes a bundle of the records under the
certificate's write scope. With --for MANIFEST, only what that device lacks and may read.
The file is written atomically, then read back and verified.

Example:
   morango export --db school.sqlite3 -o /media/usb/facility.bundle`,
		Flags: []cli.Flag{dbFlag, certFlag, filterFlag,
			&cli.StringFlag{Name: "for", Usage: "the peer's manifest `FILE`"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the bundle `FILE` to write", Required: true},
			jsonFlag, quietFlag},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c, bundle.KindBundle); err != nil {
				return err
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			cert, err := certOf(c, db)
			if err != nil {
				return err
			}
			p := newProgress(c.App.ErrWriter, c.Bool("json"), c.Bool("quiet"))
			defer p.done()
			r, err := session.Export(c.Context, db, &session.DiskConnection{Bundle: c.String("output"), Manifest: c.String("for")},
				session.ExportOptions{CertID: cert, Filter: c.StringSlice("filter"), Observer: p.observer()})
			if err != nil {
				return err
			}
			p.done()
			if c.Bool("json") {
				return printJSON(out(c), r)
			}
			printf(c, "wrote %s: %s%s\n", c.String("output"), count(r.Records, "record"), perModel(r.Counts))
			return nil
		},
	}
}

func perModel(counts map[string]int64) string {
	if len(counts) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "verify bundles and merge them into the database",
		ArgsUsage: "BUNDLE...",
		Description: `Verifies each bundle completely before writing anything: format, hash, signature,
that its certificate chain roots in a certificate this device trusts, and that every record lies in
the signer's write scope (others are refused and listed). Then merges and writes the app's rows,
in one transaction. Importing a bundle twice changes nothing.

Example:
   morango import --db school.sqlite3 /media/usb/*.bundle`,
		Flags: []cli.Flag{dbFlag, jsonFlag, quietFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("import: name at least one bundle file")
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			p := newProgress(c.App.ErrWriter, c.Bool("json"), c.Bool("quiet"))
			defer p.done()
			var results []*session.ImportResult
			var firstErr error
			for _, path := range c.Args().Slice() {
				r, err := session.Import(c.Context, db, &session.DiskConnection{Bundle: path}, session.ImportOptions{Observer: p.observer()})
				p.done()
				if err != nil {
					if session.IsAlreadyApplied(err) {
						printf(c, "%s: already applied, nothing to do\n", path)
						continue
					}
					if c.Context.Err() != nil {
						// Interrupted: the import under way was rolled back.
						return fmt.Errorf("import %s: %w", path, c.Context.Err())
					}
					if c.NArg() > 1 { // the others go on; the first error ends the command
						fmt.Fprintf(c.App.ErrWriter, "%s: %v\n", path, err)
					}
					if firstErr == nil {
						firstErr = fmt.Errorf("import: %w", err)
					}
					continue
				}
				results = append(results, r)
				if !c.Bool("json") {
					printImport(c, path, r)
				}
			}
			if c.Bool("json") {
				if err := printJSON(out(c), results); err != nil {
					return err
				}
			}
			return firstErr
		},
	}
}

func printImport(c *cli.Context, path string, r *session.ImportResult) {
	s := r.Store
	printf(c, "%s: %s: %d new, %d updated, %d already here, %s", path, count(s.Received, "record"), s.New, s.FastForward, s.AlreadyHave, count(s.Conflicts, "conflict"))
	if s.Refused > 0 {
		printf(c, ", %d REFUSED", s.Refused)
	}
	printf(c, "; %s written, %d deleted", count(s.Deserialize.Written, "row"), s.Deserialize.Deleted)
	if s.Deserialize.Pending > 0 {
		printf(c, ", %d pending (see morango status)", s.Deserialize.Pending)
	}
	printf(c, "\n")
	if r.ForOther != "" {
		printf(c, "  note: written for another device (%s); what this device may read of it was applied, and the bundle written for this device brings the rest\n", r.ForOther)
	}
	for _, rf := range s.Refusals {
		printf(c, "  refused %s %s in %q: %s\n", rf.ModelName, rf.ID, rf.Partition, rf.Reason)
	}
}

func manifestCommand() *cli.Command {
	return &cli.Command{
		Name:  "manifest",
		Usage: "write a signed file saying what this device has and who it is",
		Description: `A peer that exports with --for MANIFEST sends only what this device lacks
and may read.

Example:
   morango manifest --db tablet.sqlite3 -o /media/usb/tablet.manifest`,
		Flags: []cli.Flag{dbFlag, certFlag, filterFlag,
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the manifest `FILE` to write", Required: true},
			&cli.StringFlag{Name: "name", Usage: "a name for this device, shown to people"}},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c, bundle.KindManifest); err != nil {
				return err
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			cert, err := certOf(c, db)
			if err != nil {
				return err
			}
			m, err := session.WriteManifest(c.Context, db, nil, c.String("output"),
				session.ManifestOptions{CertID: cert, Filter: c.StringSlice("filter"), Name: c.String("name")})
			if err != nil {
				return err
			}
			printf(c, "wrote %s for instance %s, certificate %s\n", c.String("output"), m.Instance, m.CertID)
			return nil
		},
	}
}

func exchangeCommand() *cli.Command {
	return &cli.Command{
		Name:      "exchange",
		Usage:     "the one-command visit: import what the stick holds for this device, leave what others lack",
		ArgsUsage: "DIR",
		Description: `Imports every bundle in DIR addressed to this device (or to anyone) not yet
applied, writes this device's manifest into DIR, and a bundle for every other device whose
manifest is in DIR. Run it on each device in turn with the same stick.

Example:
   morango exchange --db school.sqlite3 /media/usb/morango`,
		Flags: []cli.Flag{dbFlag, certFlag, jsonFlag, quietFlag,
			&cli.StringFlag{Name: "name", Usage: "a name for this device, shown to people"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("exchange: name one folder")
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			cert, err := certOf(c, db)
			if err != nil {
				return err
			}
			p := newProgress(c.App.ErrWriter, c.Bool("json"), c.Bool("quiet"))
			defer p.done()
			r, err := session.Exchange(c.Context, db, c.Args().First(),
				session.ExchangeOptions{CertID: cert, Name: c.String("name"), Observer: p.observer()})
			p.done()
			if r != nil {
				if c.Bool("json") {
					if err := printJSON(out(c), r); err != nil {
						return err
					}
				} else {
					printExchange(c, r)
				}
			}
			if err != nil {
				return err
			}
			if r.Failed > 0 {
				return &exitError{code: ExitFailure, err: fmt.Errorf("exchange: %s failed", count(r.Failed, "step")),
					hint: "what is listed as FAILED was left untouched and the rest went on; see the reasons above, and morango status for rows that wait"}
			}
			return nil
		},
	}
}

func printExchange(c *cli.Context, r *session.ExchangeResult) {
	if r.Renewed != "" {
		printf(c, "  renewed   this database is older than what other devices hold of it (restored from a backup?):\n"+
			"            it now syncs as %s instead of %s, and they send back what it lost\n", r.Instance, r.Renewed)
	}
	for _, f := range r.Files {
		switch f.Action {
		case "imported":
			st := f.Import.Store
			printf(c, "  imported  %s%s: %s (%d new, %d updated, %d already here, %s", f.File, named("from", f.PeerName), count(f.Records, "record"), st.New, st.FastForward,
				st.AlreadyHave, count(st.Conflicts, "conflict"))
			if st.Refused > 0 {
				printf(c, ", %d REFUSED", st.Refused)
			}
			printf(c, ")\n")
			for i, rf := range st.Refusals {
				if i == 5 {
					printf(c, "            … and %d more refused\n", st.Refused-5)
					break
				}
				printf(c, "            refused %s %s: %s\n", rf.ModelName, rf.ID, rf.Reason)
			}
			if f.Reason != "" {
				printf(c, "            %s\n", f.Reason)
			}
		case "exported":
			printf(c, "  exported  %s%s: %s%s\n", f.File, named("for", f.PeerName), count(f.Records, "record"), perModel(f.Export.Counts))
		case "up to date":
			printf(c, "  up to date peer %s%s holds all this device would send it\n", f.Peer, named("", f.PeerName))
		case "failed":
			printf(c, "  FAILED    %s: %s\n", f.File, f.Reason)
			if f.Hint != "" {
				printf(c, "            hint: %s\n", f.Hint)
			}
		default:
			if f.Reason != "" {
				printf(c, "  %-9s %s (%s)\n", f.Action, f.File, f.Reason)
			} else {
				printf(c, "  %-9s %s\n", f.Action, f.File)
			}
		}
		if f.Note != "" {
			printf(c, "            note: %s\n", f.Note)
		}
	}
	if r.RetryError != "" {
		printf(c, "  FAILED    retrying rows waiting for the app: %s\n", r.RetryError)
	}
	if d := r.Retried; d != nil {
		printf(c, "  retried   rows waiting for the app: %d written, %d deleted, %d still pending", d.Written, d.Deleted, d.Pending)
		if d.Pending > 0 {
			printf(c, " (see morango status)")
		}
		printf(c, "\n")
	}
	if r.Unsynced > 0 {
		printf(c, "  NOT SENT  %s of this device's app cannot be synced, so no other device receives %s:\n"+
			"            see why with: morango status --db %s\n", count(r.Unsynced, "changed row"), map[bool]string{true: "it", false: "them"}[r.Unsynced == 1], c.String("db"))
	}
}

// named is " (from NAME)" for a peer's name given with --name, or "".
func named(prep, name string) string {
	switch {
	case name == "":
		return ""
	case prep == "":
		return fmt.Sprintf(" (%q)", name)
	}
	return fmt.Sprintf(" (%s %q)", prep, name)
}

// exitError sets a specific exit code and hint.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }
func (e *exitError) Hint() string  { return e.hint }

var _ = store.ErrAlreadyApplied

func forgetCommand() *cli.Command {
	return &cli.Command{
		Name:      "forget",
		Usage:     "stop devices writing bundles for a device that is gone",
		ArgsUsage: "DIR DEVICE",
		Description: `Removes from the exchange folder DIR the manifest of DEVICE (its instance id, 8 or
more of its first characters, or the name it was given with --name) and the bundles
written for it, so that the devices visiting DIR stop writing bundles for it: a tablet
that was lost, or a database moved to another machine (which syncs as a new device).
The bundles it wrote stay. A device forgotten by mistake writes its manifest again at
its next exchange. Needs no database.

Example:
   morango forget /media/usb/morango tablet-7`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef("forget: name the folder and the device")
			}
			id, removed, err := session.Forget(nil, c.Args().Get(0), c.Args().Get(1))
			if err != nil {
				return err
			}
			printf(c, "forgot %s\n", id)
			for _, n := range removed {
				printf(c, "  removed   %s\n", n)
			}
			return nil
		},
	}
}

// certOf returns the certificate a command signs with: the one --cert
// names, or else the only one whose private key this device holds.
func certOf(c *cli.Context, db *store.DB) (string, error) {
	if id := c.String("cert"); id != "" {
		return id, nil
	}
	all, err := db.Certificates(c.Context)
	if err != nil {
		return "", err
	}
	// Those whose chain still verifies (with the installed profile) can
	// sign; the others are named with why, but not chosen.
	broken, err := db.UnverifiedCertificates(c.Context)
	if err != nil {
		return "", err
	}
	var own []*store.StoredCertificate
	for _, sc := range all {
		if sc.PrivateKey != "" {
			own = append(own, sc)
		}
	}
	if usable := len(own) - len(broken); usable == 1 {
		for _, sc := range own {
			if broken[sc.Link.ID] == nil {
				return sc.Link.ID, nil
			}
		}
	}
	if len(own) == 0 {
		return "", &exitError{code: ExitUsage, err: errors.New("this device holds no certificate of its own to sign with"),
			hint: fmt.Sprintf("make the facility's root on its first device (morango cert root --db %[1]s --scope full-facility), "+
				"or ask for a certificate (morango cert request --db %[1]s …) and import the chain granted for it (morango cert import)", c.String("db"))}
	}
	if len(own) == 1 {
		return own[0].Link.ID, nil // its error says why it cannot sign
	}
	var list strings.Builder
	for _, sc := range own {
		fmt.Fprintf(&list, "\n    --cert %s   %s %s", sc.Link.ID, sc.Scope, sc.Params)
		if err := broken[sc.Link.ID]; err != nil {
			fmt.Fprintf(&list, " (cannot sign: %v)", err)
		}
	}
	return "", &exitError{code: ExitUsage, err: fmt.Errorf("this device holds %d certificates of its own: name the one to sign with", len(own)),
		hint: "add one of these (each syncs what its certificate grants; run the command once for each):" + list.String()}
}
