package cli_test

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// morangoBin is the real binary, built once by TestMain.
var morangoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "morango-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	morangoBin = filepath.Join(dir, "morango")
	if out, err := exec.Command("go", "build", "-o", morangoBin, "github.com/morango-sync/morango").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the morango binary: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the environment of the binary: this process's, without
// MORANGO_DB, so that a missing --db stays missing.
func env() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MORANGO_DB=") })
}

// result is what one run of the binary did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// morango runs the binary with args and returns its exit code and output.
func morango(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(morangoBin, args...)
	cmd.Env = env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := result{}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("morango %s: %v", strings.Join(args, " "), err)
		}
		r.code = ee.ExitCode()
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// ok runs the binary and fails the test unless it exits 0.
func ok(t *testing.T, args ...string) result {
	t.Helper()
	r := morango(t, args...)
	if r.code != 0 {
		t.Fatalf("morango %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// hasHint reports whether stderr holds a "hint:" line.
func hasHint(stderr string) bool {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "hint: ") && len(l) > len("hint: ") {
			return true
		}
	}
	return false
}

// appDB is the app's own connection to its database file.
type appDB struct {
	t    *testing.T
	path string
	db   *sql.DB
}

func openApp(t *testing.T, path string) *appDB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &appDB{t: t, path: path, db: db}
}

// newApp creates the app's database, with its tables and no rows.
func newApp(t *testing.T, dir, name string) *appDB {
	t.Helper()
	schema, err := os.ReadFile(filepath.Join("testdata", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	a := openApp(t, filepath.Join(dir, name+".sqlite3"))
	a.exec(string(schema))
	return a
}

func (a *appDB) exec(q string, args ...any) {
	a.t.Helper()
	if _, err := a.db.Exec(q, args...); err != nil {
		a.t.Fatalf("%s: %v", q, err)
	}
}

func (a *appDB) count(q string, args ...any) int {
	a.t.Helper()
	var n int
	if err := a.db.QueryRow(q, args...).Scan(&n); err != nil {
		a.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// copyTo writes a consistent copy of the database to path.
func (a *appDB) copyTo(path string) *appDB {
	a.t.Helper()
	a.exec(`VACUUM INTO ?`, path)
	return openApp(a.t, path)
}

// integrity runs SQLite's integrity check on a fresh connection.
func integrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		t.Errorf("integrity check of %s: %q %v", filepath.Base(path), res, err)
	}
}

var appTables = []string{"facilitydataset", "facilityuser", "classroom", "contentlog", "adminnote"}

// syncTables hold what a device has: the app's rows and the sync data.
// The identity of the database (instance and database ids, which change
// when a file is copied) and the log of transfer sessions are left out.
var syncTables = append(slices.Clone(appTables), "morango_store", "morango_recordmaxcounter", "morango_databasemaxcounter",
	"morango_appliedbundle", "morango_dirty", "morango_harddeletedmodels", "morango_applying", "morango_certificate")

// dump returns the rows of the tables as their columns' SQL literals,
// sorted, without the columns named in skip as "table.column".
func (a *appDB) dump(tables []string, skip ...string) map[string][]string {
	a.t.Helper()
	out := map[string][]string{}
	for _, tb := range tables {
		rows, err := a.db.Query(`SELECT name FROM pragma_table_info(?) ORDER BY cid`, tb)
		if err != nil {
			a.t.Fatal(err)
		}
		var cols []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				a.t.Fatal(err)
			}
			if !slices.Contains(skip, tb+"."+c) {
				cols = append(cols, fmt.Sprintf(`quote("%s")`, c))
			}
		}
		rows.Close()
		rows, err = a.db.Query(fmt.Sprintf(`SELECT %s FROM "%s"`, strings.Join(cols, ` || ' | ' || `), tb))
		if err != nil {
			a.t.Fatal(err)
		}
		lines := []string{}
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				a.t.Fatal(err)
			}
			lines = append(lines, l)
		}
		rows.Close()
		slices.Sort(lines)
		out[tb] = lines
	}
	return out
}

// state is what a device holds, comparable between devices that received
// the same bundles.
func (a *appDB) state() map[string][]string {
	return a.dump(syncTables, "morango_store.last_transfer_session_id", "morango_appliedbundle.applied_at",
		"morango_certificate.added_at")
}

// differ describes how two dumps differ, or returns "".
func differ(a, b map[string][]string) string {
	var out []string
	for tb, ra := range a {
		if rb := b[tb]; !slices.Equal(ra, rb) {
			out = append(out, fmt.Sprintf("%s: %d rows vs %d", tb, len(ra), len(rb)))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// facility is a facility device with its root certificate and a city
// device with a full-facility certificate granted by it, set up with the
// binary as people do.
type facility struct {
	dir, profile   string
	fac, city      *appDB
	root, cityCert string
}

func setup(t *testing.T) *facility {
	t.Helper()
	dir := t.TempDir()
	prof, err := filepath.Abs(filepath.Join("testdata", "profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := &facility{dir: dir, profile: prof, fac: newApp(t, dir, "facility"), city: newApp(t, dir, "city")}
	for _, a := range []*appDB{f.fac, f.city} {
		if r := ok(t, "init", "--db", a.path, "--profile", prof); !strings.HasPrefix(r.stdout, "initialized ") {
			t.Fatalf("init: %s", r)
		}
	}
	r := ok(t, "cert", "root", "--db", f.fac.path, "--scope", "full-facility")
	f.root = strings.Fields(r.stdout)[0]
	req, chain := filepath.Join(dir, "city.request"), filepath.Join(dir, "city.chain")
	ok(t, "cert", "request", "--db", f.city.path, "--scope", "full-facility", "--param", "dataset_id="+f.root, "-o", req)
	ok(t, "cert", "grant", "--db", f.fac.path, "--parent", f.root, req, "-o", chain)
	r = ok(t, "cert", "import", "--db", f.city.path, chain)
	if fields := strings.Fields(r.stdout); len(fields) > 1 && fields[0] == "imported" {
		f.cityCert = fields[1]
	} else {
		t.Fatalf("cert import: %s", r)
	}
	if len(f.root) != 32 || len(f.cityCert) != 32 || f.root == f.cityCert {
		t.Fatalf("certificates %q %q", f.root, f.cityCert)
	}
	return f
}

// seed writes a facility's rows with plain SQL: the dataset, users, a
// classroom, logs per user and a note.
func seed(a *appDB, dataset string, users, logsPerUser int) {
	a.t.Helper()
	tx, err := a.db.Begin()
	if err != nil {
		a.t.Fatal(err)
	}
	defer tx.Rollback()
	must := func(_ sql.Result, err error) {
		if err != nil {
			a.t.Fatal(err)
		}
	}
	id := func(kind byte, i, j int) string { return fmt.Sprintf("%c%07x%08x%016x", kind, i, j, 0) }
	must(tx.Exec(`INSERT INTO facilitydataset (id, description) VALUES (?, 'Riverside school')`, dataset))
	must(tx.Exec(`INSERT INTO classroom (id, dataset_id, name) VALUES (?, ?, 'Class 4')`, id('c', 0, 0), dataset))
	must(tx.Exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'budget')`, id('a', 0, 0), dataset))
	user, err := tx.Prepare(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, ?)`)
	if err != nil {
		a.t.Fatal(err)
	}
	log, err := tx.Prepare(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		a.t.Fatal(err)
	}
	for i := range users {
		u := id('b', i, 0)
		must(user.Exec(u, dataset, fmt.Sprintf("learner%d", i)))
		for j := range logsPerUser {
			must(log.Exec(id('d', i, j), dataset, u, fmt.Sprintf("content-%d", j), float64(j%100)/100))
		}
	}
	if err := tx.Commit(); err != nil {
		a.t.Fatal(err)
	}
}

// TestEndToEnd drives the binary as people do: init two databases, make,
// request, grant and import certificates, export, import both ways; and
// checks exit codes and hints.
func TestEndToEnd(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 3, 4)
	bundle1 := filepath.Join(f.dir, "1.bundle")
	r := ok(t, "export", "--db", f.fac.path, "--cert", f.root, "-o", bundle1)
	if !strings.Contains(r.stdout, "wrote "+bundle1+": 18 records") {
		t.Errorf("export: %s", r)
	}
	r = ok(t, "import", "--db", f.city.path, bundle1)
	if !strings.Contains(r.stdout, "18 records: 18 new") {
		t.Errorf("import: %s", r)
	}
	if d := differ(f.fac.dump(appTables), f.city.dump(appTables)); d != "" {
		t.Fatalf("the app rows differ after the import: %s", d)
	}
	// Importing the same bundle again changes nothing.
	before := f.city.state()
	r = ok(t, "import", "--db", f.city.path, bundle1)
	if !strings.Contains(r.stdout, "already applied") {
		t.Errorf("second import: %s", r)
	}
	if d := differ(before, f.city.state()); d != "" {
		t.Errorf("the second import changed %s", d)
	}

	// City edits; it exports what Facility lacks, for Facility's manifest.
	f.city.exec(`UPDATE facilityuser SET full_name = 'Ana Lima' WHERE username = 'learner0'`)
	f.city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('e0000000000000000000000000000001', ?, 'inspection')`, f.root)
	manifest := filepath.Join(f.dir, "facility.manifest")
	ok(t, "manifest", "--db", f.fac.path, "--cert", f.root, "-o", manifest, "--name", "facility")
	bundle2 := filepath.Join(f.dir, "2.bundle")
	r = ok(t, "export", "--db", f.city.path, "--cert", f.cityCert, "--for", manifest, "-o", bundle2, "--json")
	var e struct {
		Records int64 `json:"records"`
		ForPeer bool  `json:"for_peer"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.Records != 2 || !e.ForPeer {
		t.Errorf("export for the manifest: %+v %v\n%s", e, err, r)
	}
	ok(t, "import", "--db", f.fac.path, bundle2, "--quiet")
	if d := differ(f.fac.dump(appTables), f.city.dump(appTables)); d != "" {
		t.Fatalf("the app rows differ after the import back: %s", d)
	}

	t.Run("tampered bundle", func(t *testing.T) {
		f.fac.exec(`UPDATE classroom SET name = 'Class 4B'`)
		p := filepath.Join(f.dir, "3.bundle")
		ok(t, "export", "--db", f.fac.path, "--cert", f.root, "-o", p, "--quiet")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-10] ^= 0x01 // in the signature
		tampered := filepath.Join(f.dir, "tampered.bundle")
		if err := os.WriteFile(tampered, b, 0o644); err != nil {
			t.Fatal(err)
		}
		before := f.city.state()
		r := morango(t, "import", "--db", f.city.path, tampered)
		if r.code != 1 || !hasHint(r.stderr) || !strings.Contains(r.stderr, "signature is not valid") {
			t.Errorf("tampered bundle: want exit 1, the reason and a hint: %s", r)
		}
		if d := differ(before, f.city.state()); d != "" {
			t.Errorf("the tampered bundle changed %s", d)
		}
		// The untouched file imports.
		ok(t, "import", "--db", f.city.path, p)
	})

	t.Run("untrusted root", func(t *testing.T) {
		other := newApp(t, f.dir, "other")
		ok(t, "init", "--db", other.path, "--profile", f.profile)
		root := strings.Fields(ok(t, "cert", "root", "--db", other.path, "--scope", "full-facility").stdout)[0]
		seed(other, root, 1, 1)
		p := filepath.Join(f.dir, "other.bundle")
		ok(t, "export", "--db", other.path, "--cert", root, "-o", p, "--quiet")
		r := morango(t, "import", "--db", f.city.path, p)
		if r.code != 1 || !hasHint(r.stderr) || !strings.Contains(r.stderr, "does not root in a certificate this device trusts") {
			t.Errorf("bundle of another facility: want exit 1, the reason and a hint: %s", r)
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		for _, c := range []struct {
			code int
			args []string
		}{
			{0, []string{"status", "--db", f.city.path}},
			{0, []string{"cert", "list", "--db", f.city.path, "--json"}},
			{1, []string{"import", "--db", f.city.path, filepath.Join(f.dir, "no-such.bundle")}},
			{1, []string{"status", "--db", filepath.Join(f.dir, "no-such.sqlite3")}},
			{1, []string{"export", "--db", f.city.path, "--cert", f.root, "-o", filepath.Join(f.dir, "x.bundle")}}, // no private key
			{2, []string{"import", "--db", f.city.path}},
			{2, []string{"cert", "grant", "--db", f.fac.path, "--parent", f.root, "-o", filepath.Join(f.dir, "x.chain")}},
			{2, []string{"cert", "request", "--db", f.city.path, "--scope", "full-facility", "--param", "novalue", "-o", filepath.Join(f.dir, "x.request")}},
			{2, []string{"cert", "root", "--db", f.fac.path, "--scope", "no-such-scope"}},
		} {
			r := morango(t, c.args...)
			if r.code != c.code {
				t.Errorf("morango %s: exit %d, want %d\n%s", strings.Join(c.args, " "), r.code, c.code, r)
			}
			if c.code == 1 && !hasHint(r.stderr) {
				t.Logf("morango %s: no hint: %s", strings.Join(c.args, " "), r.stderr)
			}
		}
	})

	t.Run("usage errors found by the flag parser", func(t *testing.T) {
		for _, args := range [][]string{
			{"import", f.city.path},                         // --db missing
			{"import", "--db", f.city.path, "--bogus", "x"}, // unknown flag
			{"no-such-command"},
		} {
			if r := morango(t, args...); r.code != 2 {
				t.Errorf("morango %s: exit %d, want 2\n%s", strings.Join(args, " "), r.code, r)
			}
		}
	})
}

// TestKilledImport kills imports of a large bundle part-way, at several
// points, with SIGKILL (and once with SIGINT). Each time the database
// passes SQLite's integrity check and holds either what it held before or
// the whole bundle, and running the import again gives exactly what an
// uninterrupted import gives.
func TestKilledImport(t *testing.T) {
	if testing.Short() {
		t.Skip("imports a large bundle several times")
	}
	f := setup(t)
	// 12 000 logs: large enough that an import takes a while, small enough
	// to import it a dozen times.
	seed(f.fac, f.root, 24, 500)
	big := filepath.Join(f.dir, "big.bundle")
	ok(t, "export", "--db", f.fac.path, "--cert", f.root, "-o", big, "--quiet")

	// City before the import, copied for every run.
	before := f.city.state()
	ref := f.city.copyTo(filepath.Join(f.dir, "reference.sqlite3"))
	start := time.Now()
	ok(t, "import", "--db", ref.path, big, "--quiet")
	took := time.Since(start)
	after := ref.state()
	if n := len(after["morango_store"]); n != 24*500+24+3 {
		t.Fatalf("the uninterrupted import holds %d records", n)
	}
	t.Logf("uninterrupted import: %v", took)

	type trigger struct {
		name         string
		stage, event string // the progress event (--json) that starts the delay
		delay        time.Duration
		signal       syscall.Signal
	}
	triggers := []trigger{
		{"verifying", "transferring", "in_progress", 0, syscall.SIGKILL},
		{"merge started", "dequeuing", "started", 0, syscall.SIGKILL},
		{"merging", "dequeuing", "started", took / 5, syscall.SIGKILL},
		{"merging, interrupted", "dequeuing", "started", took / 5, syscall.SIGINT},
		{"writing app rows", "deserializing", "started", 0, syscall.SIGKILL},
		{"after commit", "cleanup", "started", 0, syscall.SIGKILL},
	}
	interrupted := 0
	for i, tr := range triggers {
		t.Run(tr.name, func(t *testing.T) {
			db := f.city.copyTo(filepath.Join(f.dir, fmt.Sprintf("killed-%d.sqlite3", i)))
			cmd := exec.Command(morangoBin, "import", "--db", db.path, big, "--json")
			cmd.Env = env()
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			seen := make(chan struct{})
			drained := make(chan struct{})
			var text strings.Builder // stderr's lines that are not events
			go func() {
				defer close(drained)
				sc := bufio.NewScanner(stderr)
				fired := false
				for sc.Scan() {
					if !strings.HasPrefix(sc.Text(), "{") {
						text.WriteString(sc.Text() + "\n")
					}
					var ev struct{ Stage, Event string }
					if json.Unmarshal(sc.Bytes(), &ev) == nil && !fired && ev.Stage == tr.stage && ev.Event == tr.event {
						fired = true
						close(seen)
					}
				}
			}()
			select {
			case <-seen:
				time.Sleep(tr.delay)
				if err := cmd.Process.Signal(tr.signal); err != nil {
					t.Logf("signal: %v", err)
				}
			case <-drained:
				t.Logf("the import ended before %s %s", tr.stage, tr.event)
			}
			<-drained
			werr := cmd.Wait()
			integrity(t, db.path)
			got := db.state()
			switch {
			case differ(got, before) == "":
				interrupted++
				if tr.signal == syscall.SIGINT {
					var ee *exec.ExitError
					if !errors.As(werr, &ee) || ee.ExitCode() != 130 {
						t.Errorf("interrupted import: %v, want exit 130", werr)
					}
					if !strings.HasPrefix(text.String(), "morango: interrupted") || !strings.Contains(text.String(), "run the same command again") {
						t.Errorf("interrupted import: stderr %q, want it to say so and what to do", text.String())
					}
				}
				r := ok(t, "import", "--db", db.path, big, "--json")
				var res []struct {
					Resumed bool `json:"resumed"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res) != 1 || !res[0].Resumed {
					t.Errorf("the second run did not resume the interrupted transfer: %v %s", err, r.stdout)
				}
			case differ(got, after) == "":
				t.Logf("killed after the commit (%v)", werr)
				if r := ok(t, "import", "--db", db.path, big); !strings.Contains(r.stdout, "already applied") {
					t.Errorf("import after a completed import: %s", r)
				}
			default:
				t.Fatalf("killed import left neither the state before nor after: before: %s; after: %s",
					differ(got, before), differ(got, after))
			}
			integrity(t, db.path)
			if d := differ(db.state(), after); d != "" {
				t.Errorf("the completed import differs from an uninterrupted one: %s", d)
			}
		})
	}
	if interrupted < 3 {
		t.Errorf("only %d of %d runs were stopped before their commit", interrupted, len(triggers))
	}
}

// The mistakes a person makes get one clear error, with a hint, exit code
// 1, and change nothing.
func TestMistakesSayWhatToDo(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 1, 2)
	good := filepath.Join(f.dir, "good.bundle")
	ok(t, "export", "--db", f.fac.path, "--cert", f.root, "-o", good, "--quiet")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(f.dir, "cut.bundle") // as a stick pulled out mid-copy leaves it
	if err := os.WriteFile(cut, data[:len(data)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(f.dir, "notes.txt")
	cutProfile := filepath.Join(f.dir, "cut.json")
	request := filepath.Join(f.dir, "tablet.request")
	for _, p := range []struct {
		path, text string
	}{{notDB, "shopping list\n"}, {cutProfile, `{"profile": "facilitydata", "models": [`}} {
		if err := os.WriteFile(p.path, []byte(p.text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ok(t, "cert", "request", "--db", f.city.path, "--scope", "full-facility", "--param", "dataset_id="+f.root, "-o", request)
	empty := newApp(t, f.dir, "empty")
	manifest := filepath.Join(f.dir, "fac.manifest")
	ok(t, "manifest", "--db", f.fac.path, "--cert", f.root, "-o", manifest)

	before := f.city.state()
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"import", "--db", f.city.path, cut}, "writes it anew at its next exchange"},
		{[]string{"status", "--db", notDB}, "file is not a database"},
		{[]string{"init", "--db", empty.path, "--profile", cutProfile}, "ends before it is complete"},
		{[]string{"cert", "import", "--db", f.city.path, request}, "is a certificate request, not a chain"},
		{[]string{"cert", "request", "--db", f.city.path, "--scope", "single-user", "--param", "dataset_id=" + f.root, "-o", request + "2"}, "it needs user_id"},
		{[]string{"cert", "root", "--db", f.city.path, "--scope", "full-facility"}, "a new root would start another facility"},
		{[]string{"forget", f.dir, "tablet-9"}, "no device \"tablet-9\" has a manifest"},
		{[]string{"delete", "--db", f.city.path, "--model", "classroom", "0123456789abcdef0123456789abcdef"}, "no classroom with id"},
		{[]string{"import", "--db", f.city.path, manifest}, "this is a manifest"},
	} {
		r := morango(t, c.args...)
		if r.code != 1 || !hasHint(r.stderr) || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%v: want exit 1, %q and a hint: %s", c.args[:2], c.says, r)
		}
		if n := strings.Count(r.stderr, c.says); n != 1 {
			t.Errorf("%v: the error is printed %d times: %s", c.args[:2], n, r.stderr)
		}
	}
	if d := differ(before, f.city.state()); d != "" {
		t.Errorf("a refused command changed %s", d)
	}
}

// --version answers, as a person checking which build a device runs
// expects.
func TestVersion(t *testing.T) {
	r := ok(t, "--version")
	if !strings.HasPrefix(r.stdout, "morango version ") {
		t.Errorf("--version: %s", r)
	}
}

// 'morango init --db' is where a person first names the app's database:
// the file that is not a database gets the hint there too, and a profile
// cut to nothing (a copy that failed) says it is cut short, as a profile
// cut anywhere else does.
func TestInitMistakesSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	prof, err := filepath.Abs(filepath.Join("testdata", "profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(dir, "notes.txt")
	emptyProfile := filepath.Join(dir, "empty.json")
	for p, text := range map[string]string{notDB: "shopping list\n", emptyProfile: ""} {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	app := newApp(t, dir, "app")
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"init", "--db", notDB, "--profile", prof}, "this file is not one"},
		{[]string{"init", "--db", app.path, "--profile", emptyProfile}, "ends before it is complete"},
	} {
		r := morango(t, c.args...)
		if r.code != 1 || !hasHint(r.stderr) || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%v: want exit 1, %q and a hint: %s", c.args, c.says, r)
		}
	}
}
