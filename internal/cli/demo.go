package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/internal/school"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "play the school story on fresh devices and check that they converge",
		Description: `Five devices, each a real database of the sample school app, in a temporary folder:
Facility (the school laptop, holds the root certificate), Home (a learner's tablet with a
single-user certificate), City (an admin's laptop), Cloud (a server) and City 2 (a second admin
laptop). Data moves only through a folder standing in for a USB stick, with the same commands a
person types. It prints every step, then a table of what each device holds, and exits non-zero if
any device does not hold what it should.

Example:
   morango demo
   morango demo --records 100000 --dir /tmp/school-demo --keep`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "the `FOLDER` to play in (default: a temporary folder)"},
			&cli.IntFlag{Name: "records", Value: 2000, Usage: "the school's size in app rows"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the folder afterwards"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			if dir == "" {
				tmp, err := os.MkdirTemp("", "morango-demo-")
				if err != nil {
					return err
				}
				dir = tmp
				if !c.Bool("keep") {
					defer os.RemoveAll(dir)
				}
			} else if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			d := &demo{ctx: c.Context, dir: dir, w: out(c), errw: c.App.ErrWriter, records: c.Int("records")}
			err := d.run()
			if c.Bool("keep") || c.String("dir") != "" {
				fmt.Fprintf(d.w, "\nthe devices are in %s\n", dir)
			}
			return err
		},
	}
}

// demo plays the user story of the design on five fresh devices.
type demo struct {
	ctx     context.Context
	dir     string
	w, errw io.Writer
	records int

	dataset                 string // the facility's root certificate id
	learner, summary, taken string // the learner, the summary log both edit, the log the learner deletes
	erased                  string // the log the admin hard-deletes
	certs                   map[string]string
}

var demoDevices = []string{"facility", "home", "city", "cloud", "city2"}

func (d *demo) db(device string) string { return filepath.Join(d.dir, device, "school.sqlite3") }
func (d *demo) stick() string           { return filepath.Join(d.dir, "usb-stick") }

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.w, format+"\n", args...) }

// morango runs a command as a person would type it and shows it.
func (d *demo) morango(args ...string) (string, error) {
	shown := make([]string, len(args))
	for i, a := range args {
		if rel, err := filepath.Rel(d.dir, a); err == nil && !strings.HasPrefix(rel, "..") && filepath.IsAbs(a) {
			a = rel
		}
		shown[i] = a
	}
	fmt.Fprintf(d.w, "$ morango %s\n", strings.Join(shown, " "))
	var buf bytes.Buffer
	err := Run(d.ctx, append([]string{"morango"}, args...), &buf, &buf)
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		if line != "" {
			fmt.Fprintf(d.w, "  %s\n", line)
		}
	}
	if err != nil {
		return buf.String(), fmt.Errorf("morango %s: %w", strings.Join(shown, " "), err)
	}
	return buf.String(), nil
}

// app opens a device's database as the app itself does.
func (d *demo) app(device string) (*sql.DB, error) {
	return sql.Open("sqlite", d.db(device)+"?_pragma=busy_timeout(10000)")
}

func (d *demo) appExec(device, what string, q string, args ...any) error {
	d.say("(app on %s) %s", device, what)
	db, err := d.app(device)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(d.ctx, q, args...)
	return err
}

func (d *demo) exchange(device string) error {
	_, err := d.morango("exchange", "--db", d.db(device), "--cert", d.certs[device], "--name", device, "--quiet", d.stick())
	return err
}

func (d *demo) run() error {
	d.certs = map[string]string{}
	if err := os.MkdirAll(d.stick(), 0o755); err != nil {
		return err
	}
	profilePath := filepath.Join(d.dir, "profile.json")
	if err := os.WriteFile(profilePath, school.ProfileJSON(), 0o644); err != nil {
		return err
	}
	d.say("# Five devices of a school app; a folder stands in for the USB stick.\n")
	for _, dev := range demoDevices {
		if err := os.MkdirAll(filepath.Join(d.dir, dev), 0o755); err != nil {
			return err
		}
		db, err := d.app(dev)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(d.ctx, school.Schema())
		db.Close()
		if err != nil {
			return err
		}
		if _, err := d.morango("init", "--db", d.db(dev), "--profile", profilePath); err != nil {
			return err
		}
	}

	d.say("\n# Facility creates the facility: a root certificate whose id is the dataset id.")
	out, err := d.morango("cert", "root", "--db", d.db("facility"), "--scope", "full-facility")
	if err != nil {
		return err
	}
	d.dataset = strings.Fields(out)[0]
	d.certs["facility"] = d.dataset
	app, err := d.app("facility")
	if err != nil {
		return err
	}
	sum, err := school.Generate(d.ctx, app, d.dataset, school.Options{Seed: 1, Records: d.records})
	app.Close()
	if err != nil {
		return err
	}
	d.learner = sum.LearnerIDs[0]
	d.say("(app on facility) records the school: %s, %s, %s", count(sum.Rows, "row"), count(len(sum.LearnerIDs), "learner"), count(len(sum.Classrooms), "classroom"))

	d.say("\n# Certificates travel as files on the stick: each device asks, a holder of a wider one grants.")
	grants := []struct{ dev, scope, by string }{
		{"home", "single-user", "facility"},
		{"city", "full-facility", "facility"},
		{"cloud", "full-facility", "city"},
		{"city2", "full-facility", "cloud"},
	}
	for _, g := range grants {
		req := filepath.Join(d.stick(), g.dev+".request")
		chain := filepath.Join(d.stick(), g.dev+".chain")
		args := []string{"cert", "request", "--db", d.db(g.dev), "--scope", g.scope, "--param", "dataset_id=" + d.dataset}
		if g.scope == "single-user" {
			args = append(args, "--param", "user_id="+d.learner)
		}
		if _, err := d.morango(append(args, "-o", req)...); err != nil {
			return err
		}
		if _, err := d.morango("cert", "grant", "--db", d.db(g.by), "--parent", d.certs[g.by], req, "-o", chain); err != nil {
			return err
		}
		out, err := d.morango("cert", "import", "--db", d.db(g.dev), chain)
		if err != nil {
			return err
		}
		d.certs[g.dev] = strings.Fields(out)[1]
	}

	d.say("\n# The stick visits Facility and the learner's tablet: one command per visit.")
	for _, dev := range []string{"facility", "home", "facility", "home"} {
		if err := d.exchange(dev); err != nil {
			return err
		}
	}

	d.say("\n# A week passes. The learner works offline; the coach assigns a lesson; both edit the same record.")
	hdb, err := d.app("home")
	if err != nil {
		return err
	}
	err = hdb.QueryRowContext(d.ctx, `SELECT id FROM contentsummarylog WHERE user_id = ? ORDER BY id LIMIT 1`, d.learner).Scan(&d.summary)
	if err == nil {
		err = hdb.QueryRowContext(d.ctx, `SELECT id FROM contentsessionlog WHERE user_id = ? ORDER BY id LIMIT 1`, d.learner).Scan(&d.taken)
	}
	if err == nil {
		err = hdb.QueryRowContext(d.ctx, `SELECT id FROM contentsessionlog WHERE user_id = ? ORDER BY id DESC LIMIT 1`, d.learner).Scan(&d.erased)
	}
	hdb.Close()
	if err != nil {
		return fmt.Errorf("the learner's tablet lacks the learner's logs: %w", err)
	}
	week := time.Date(2026, 11, 9, 16, 0, 0, 0, time.UTC)
	d.say("(app on home) the learner works through 25 activities")
	hdb, err = d.app("home")
	if err != nil {
		return err
	}
	err = school.LearnerWeek(d.ctx, hdb, d.dataset, d.learner, 25, 2, week)
	hdb.Close()
	if err != nil {
		return err
	}
	steps := []struct {
		dev, what, q string
		args         []any
	}{
		{"home", "the learner finishes an exercise (progress 1.0)",
			`UPDATE contentsummarylog SET progress = 1.0, completed = 1, modified = ? WHERE id = ?`, []any{"2026-11-09T10:00:00.000Z", ""}},
		{"facility", "the coach corrects the same record (progress 0.8)",
			`UPDATE contentsummarylog SET progress = 0.8, completed = 0, modified = ? WHERE id = ?`, []any{"2026-11-09T11:00:00.000Z", ""}},
		{"home", "the learner deletes a session log",
			`DELETE FROM contentsessionlog WHERE id = ?`, []any{""}},
		{"facility", "the coach assigns a new lesson",
			`INSERT INTO lesson (id, dataset_id, classroom_id, title, is_active, modified)
			 SELECT ?, ?, classroom_id, 'Fractions, week 2', 1, '2026-11-09T12:00:00.000Z' FROM membership WHERE user_id = ?`, nil},
	}
	steps[0].args[1], steps[1].args[1], steps[2].args[0] = d.summary, d.summary, d.taken
	steps[3].args = []any{strings.Repeat("f", 32), d.dataset, d.learner}
	for _, s := range steps {
		if err := d.appExec(s.dev, s.what, s.q, s.args...); err != nil {
			return err
		}
	}
	d.say("(admin on facility) a log recorded by mistake must be erased everywhere:")
	if _, err := d.morango("delete", "--db", d.db("facility"), "--model", "contentsessionlog", d.erased); err != nil {
		return err
	}

	d.say("\n# The stick goes back and forth between the tablet and the school.")
	for _, dev := range []string{"home", "facility", "home"} {
		if err := d.exchange(dev); err != nil {
			return err
		}
	}
	d.say("\n# City visits the school, then the cloud; City 2 syncs with the cloud.")
	for _, dev := range []string{"city", "facility", "city", "cloud", "city", "cloud", "city2", "cloud", "city2"} {
		if err := d.exchange(dev); err != nil {
			return err
		}
	}
	return d.check()
}

// deviceState is what one device holds.
type deviceState struct {
	records, rows                    int
	facilityDigest, learnerDigest    string
	outside                          int  // records outside what the device may read
	conflict, deleted, erased, fresh bool // the story's records arrived
	appDeleted, appErased            bool
}

func (d *demo) state(dev string, readPrefixes []string) (*deviceState, error) {
	db, err := d.app(dev)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	st := &deviceState{}
	learnerScope := []string{d.dataset + ":user-rw:" + d.learner, d.dataset + ":allusers-ro", d.dataset + ":user-ro:" + d.learner}
	under := func(p string, prefixes []string) bool {
		for _, x := range prefixes {
			if strings.HasPrefix(p, x) {
				return true
			}
		}
		return false
	}
	rows, err := db.QueryContext(d.ctx, `SELECT s.id, s.partition, s.serialized, s.deleted, s.hard_deleted, s.last_saved_instance,
		s.last_saved_counter, s.conflicting_serialized_data,
		(SELECT group_concat(instance_id || ':' || counter) FROM (SELECT * FROM morango_recordmaxcounter r WHERE r.store_model_id = s.id ORDER BY instance_id))
		FROM morango_store s ORDER BY s.id`)
	if err != nil {
		return nil, err
	}
	all, mine := sha256.New(), sha256.New()
	for rows.Next() {
		var id, part, ser, lsi, conf string
		var hist sql.NullString
		var del, hard bool
		var lsc int64
		if err := rows.Scan(&id, &part, &ser, &del, &hard, &lsi, &lsc, &conf, &hist); err != nil {
			rows.Close()
			return nil, err
		}
		st.records++
		line := fmt.Sprintf("%s|%s|%s|%t|%t|%s|%d|%s|%s\n", id, part, ser, del, hard, lsi, lsc, conf, hist.String)
		all.Write([]byte(line))
		if under(part, learnerScope) {
			mine.Write([]byte(line))
		}
		if !under(part, readPrefixes) {
			st.outside++
		}
		switch id {
		case d.summary:
			st.conflict = conf != ""
		case d.taken:
			st.deleted = del && !hard
		case d.erased:
			st.erased = hard && ser == "{}" && conf == ""
		case strings.Repeat("f", 32):
			st.fresh = !del
		}
	}
	rows.Close()
	st.facilityDigest = hex.EncodeToString(all.Sum(nil))[:12]
	st.learnerDigest = hex.EncodeToString(mine.Sum(nil))[:12]
	var n int
	if err := db.QueryRowContext(d.ctx, `SELECT count(*) FROM contentsessionlog WHERE id = ?`, d.taken).Scan(&n); err != nil {
		return nil, err
	}
	st.appDeleted = n == 0
	if err := db.QueryRowContext(d.ctx, `SELECT count(*) FROM contentsessionlog WHERE id = ?`, d.erased).Scan(&n); err != nil {
		return nil, err
	}
	st.appErased = n == 0
	for _, t := range []string{"facilitydataset", "facility", "facilityuser", "classroom", "membership", "lesson", "lessonassignment",
		"contentsummarylog", "contentsessionlog", "anonymoussessionlog", "coachnote"} {
		if err := db.QueryRowContext(d.ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
			return nil, err
		}
		st.rows += n
	}
	return st, nil
}

// check prints what every device holds and fails unless the story's
// promises hold.
func (d *demo) check() error {
	d.say("\n# What every device holds")
	full := []string{d.dataset}
	home := []string{d.dataset + ":user-rw:" + d.learner, d.dataset + ":allusers-ro", d.dataset + ":user-ro:" + d.learner}
	states := map[string]*deviceState{}
	for _, dev := range demoDevices {
		read := full
		if dev == "home" {
			read = home
		}
		st, err := d.state(dev, read)
		if err != nil {
			return err
		}
		states[dev] = st
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "device\trecords\tapp rows\tfacility digest\tlearner digest\toutside scope\tconflict kept\tdeletion\thard delete\tnew lesson")
	for _, dev := range demoDevices {
		st := states[dev]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", dev, st.records, st.rows, st.facilityDigest, st.learnerDigest,
			st.outside, yes(st.conflict), yes(st.deleted && st.appDeleted), yes(st.erased && st.appErased), yes(st.fresh))
	}
	tw.Flush()
	fmt.Fprintln(d.w, `
facility digest: a hash of every record the device holds, with its versions and history (equal
digests: identical data); home may read only its learner's and the shared data, so its digest is
its learner digest.
learner digest: the same hash over the learner's and the shared data, which every device holds.
outside scope: records a device holds but its certificate may not read (must be 0).
conflict kept, deletion, hard delete, new lesson: the story's events arrived on the device.`)

	var problems []string
	ref := states["facility"]
	for _, dev := range demoDevices {
		st := states[dev]
		if dev != "home" && st.facilityDigest != ref.facilityDigest {
			problems = append(problems, dev+" does not hold the same facility data as facility")
		}
		if st.learnerDigest != ref.learnerDigest {
			problems = append(problems, dev+" does not hold the same learner data as facility")
		}
		if st.outside != 0 {
			problems = append(problems, fmt.Sprintf("%s holds %d records it may not read", dev, st.outside))
		}
		if !st.conflict || !st.deleted || !st.appDeleted || !st.erased || !st.appErased || !st.fresh {
			problems = append(problems, dev+" is missing the conflict, a deletion or the new lesson")
		}
	}
	if states["home"].records >= ref.records {
		problems = append(problems, "home holds as much as facility: its scope was not applied")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(d.errw, "FAIL: %s\n", p)
		}
		return errors.New("demo: the devices did not converge")
	}
	d.say("\nAll full-facility devices hold identical data; Home holds only its learner's data and the shared")
	d.say("read-only data; the conflict, the deletion and the hard deletion arrived everywhere.")
	return nil
}
