package cli_test

import (
	"bufio"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
)

// TestKilledCommands kills the real binary with SIGKILL at chosen points
// of export, import and exchange. The points are found by reading the
// progress events the binary prints with --json, never by sleeping: the
// kill comes as soon as the event that starts a stage (or reports it half
// done) appears, with enough records that the stage is still running then.
// A kill that lands after the stage it aims at (the binary printed an
// event of a later stage before it died) is retried.
//
// After every kill: SQLite's integrity check passes; 'morango verify'
// finds no error; the database holds exactly what it held before the
// command or exactly what an uninterrupted run leaves (the app's tables,
// the store, the records' histories and the database's counters); every
// file on the stick under a final name is whole and valid (temporary
// files may remain); and running the command again completes, leaving
// exactly what an uninterrupted run leaves, in the database and on the
// stick.
//
// Plain 'go test' runs five points on 4 000 records (about 8 s);
// MORANGO_SLOW_TESTS=1 runs all seventeen on 12 000; -short skips it.
func TestKilledCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the binary at several points of large transfers")
	}
	slow := os.Getenv("MORANGO_SLOW_TESTS") == "1"
	users, logs := 8, 500
	if slow {
		users = 24
	}
	// only says whether a point runs: every point when slow, else the
	// ones named.
	only := func(names ...string) func(string) bool {
		return func(n string) bool { return slow || slices.Contains(names, n) }
	}

	f := setup(t)
	stick := filepath.Join(f.dir, "stick")
	usb := filepath.Join(f.dir, "usb")
	for _, d := range []string{stick, usb} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// City leaves its manifest on the stick. Facility's rows are written
	// after init and not yet serialized: its export serializes them first,
	// in the database the kill may interrupt.
	ok(t, "exchange", "--db", f.city.path, "--cert", f.cityCert, "--quiet", stick)
	seed(f.fac, f.root, users, logs)
	f.fac.db.Close()
	f.city.db.Close()
	facRecords := users*logs + users + 3

	t.Run("export", func(t *testing.T) {
		out := filepath.Join(usb, "facility.bundle")
		var want []string
		c := newCrashRun(t, f.fac.path, usb, []string{"export", "--db", f.fac.path, "--cert", f.root, "-o", out},
			func(t *testing.T) { want = bundleRecords(t, out) })
		if len(want) != facRecords {
			t.Fatalf("an uninterrupted export wrote %d records, want %d", len(want), facRecords)
		}
		c.stick = func(t *testing.T, final bool) {
			checkComplete(t, usb)
			files, _ := stickFiles(t, usb)
			if !final {
				return
			}
			// Temporary files of the killed run may remain; the next
			// export ignores them (an exchange removes them).
			if !slices.Equal(files, []string{"facility.bundle"}) {
				t.Errorf("the folder holds %q", files)
			}
			if got := bundleRecords(t, out); !slices.Equal(got, want) {
				t.Errorf("the bundle holds %d records, an uninterrupted export's %d; or they differ", len(got), len(want))
			}
		}
		c.runPoints(t, only("writing the bundle", "reading back"), []killPoint{
			{name: "serializing", direction: "export", stage: "serializing", event: "started"},
			{name: "queuing", direction: "export", stage: "queuing", event: "started"},
			{name: "writing the bundle", direction: "export", stage: "transferring", event: "in_progress", when: midway, late: allDone},
			// The first report of every record done comes before the
			// file is closed and renamed; the second after the rename,
			// while the file is read back.
			{name: "before the rename", direction: "export", stage: "transferring", event: "in_progress", when: allDone, late: allDone},
			{name: "reading back", direction: "export", stage: "transferring", event: "in_progress", when: allDone, nth: 2},
		})
	})

	// Facility leaves a bundle for City on the stick; City then works: its
	// changes are not serialized yet when the import or the exchange
	// starts, so that they take part in the merge.
	ok(t, "exchange", "--db", f.fac.path, "--cert", f.root, "--quiet", stick)
	notes := users * logs / 2
	cityApp := openApp(t, f.city.path)
	tx, err := cityApp.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range notes {
		if _, err := tx.Exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, ?)`,
			fmt.Sprintf("e%031x", i), f.root, fmt.Sprintf("city note %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	cityApp.db.Close()
	pristine, _ := stickFiles(t, stick)
	var forCity string
	for _, n := range pristine {
		if strings.HasSuffix(n, ".bundle") {
			forCity = filepath.Join(stick, n)
		}
	}
	if forCity == "" {
		t.Fatalf("facility's exchange left no bundle: %q", pristine)
	}

	t.Run("import", func(t *testing.T) {
		c := newCrashRun(t, f.city.path, "", []string{"import", "--db", f.city.path, forCity}, nil)
		c.runPoints(t, only("merging", "writing app rows"), []killPoint{
			{name: "serializing", direction: "import", stage: "serializing", event: "started"},
			{name: "verifying", direction: "import", stage: "transferring", event: "in_progress", when: midway},
			{name: "merging", direction: "import", stage: "dequeuing", event: "in_progress", when: midway},
			{name: "writing app rows", direction: "import", stage: "deserializing", event: "started"},
			{name: "after commit", direction: "import", stage: "cleanup", event: "started", anyTime: true},
		})
	})

	t.Run("exchange", func(t *testing.T) {
		var wantFiles, wantBack []string
		var back string // the bundle City writes for Facility
		c := newCrashRun(t, f.city.path, stick, []string{"exchange", "--db", f.city.path, "--cert", f.cityCert, stick},
			func(t *testing.T) {
				var temp []string
				wantFiles, temp = stickFiles(t, stick)
				if len(temp) != 0 {
					t.Fatalf("an uninterrupted exchange left %q", temp)
				}
				for _, n := range wantFiles {
					if !slices.Contains(pristine, n) && strings.HasSuffix(n, ".bundle") {
						back = filepath.Join(stick, n)
					}
				}
				if back == "" {
					t.Fatalf("the exchange wrote no bundle back: %q", wantFiles)
				}
				if wantBack = bundleRecords(t, back); len(wantBack) != notes {
					t.Fatalf("the bundle back holds %d records, want %d", len(wantBack), notes)
				}
			})
		c.stick = func(t *testing.T, final bool) {
			checkComplete(t, stick)
			files, temp := stickFiles(t, stick)
			for _, n := range pristine {
				if !slices.Contains(files, n) {
					t.Errorf("%s is gone from the stick", n)
				}
			}
			if !final {
				return
			}
			// The next exchange removes what the killed one left.
			if !slices.Equal(files, wantFiles) || len(temp) != 0 {
				t.Errorf("the stick holds %q and temporary files %q; an uninterrupted exchange leaves %q", files, temp, wantFiles)
			}
			if got := bundleRecords(t, back); !slices.Equal(got, wantBack) {
				t.Errorf("the bundle back holds %d records, an uninterrupted exchange's %d; or they differ", len(got), len(wantBack))
			}
		}
		c.runPoints(t, only("export writing"), []killPoint{
			{name: "import verifying", direction: "import", stage: "transferring", event: "in_progress", when: midway},
			{name: "import merging", direction: "import", stage: "dequeuing", event: "in_progress", when: midway},
			{name: "import writing app rows", direction: "import", stage: "deserializing", event: "started"},
			{name: "between import and export", direction: "import", stage: "cleanup", event: "completed"},
			{name: "export queuing", direction: "export", stage: "queuing", event: "started"},
			{name: "export writing", direction: "export", stage: "transferring", event: "in_progress", when: midway, late: allDone},
			{name: "export reading back", direction: "export", stage: "transferring", event: "in_progress", when: allDone, nth: 2},
		})
	})
}

// crashTables are the tables whose content is what a device holds: the
// app's rows, the store, the records' histories and the database's
// counters.
var crashTables = append(slices.Clone(appTables), "morango_store", "morango_recordmaxcounter", "morango_databasemaxcounter")

// digestOf reads what the database at path holds, through a connection of
// its own that is closed before it returns. The transfer a record came by
// is left out: its id is random.
func digestOf(t *testing.T, path string) map[string][]string {
	t.Helper()
	a := openApp(t, path)
	defer a.db.Close()
	return a.dump(crashTables, "morango_store.last_transfer_session_id")
}

// verifyClean runs 'morango verify' and fails the test if it finds an
// error.
func verifyClean(t *testing.T, path string) {
	t.Helper()
	r := morango(t, "verify", "--db", path, "--json")
	var v struct {
		Errors   int64 `json:"errors"`
		Problems []struct {
			Kind, Severity, Model, ID, Problem string
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r)
	}
	if r.code != 0 || v.Errors != 0 {
		var errs []string
		for _, p := range v.Problems {
			if p.Severity == "error" && len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("%s %s %s: %s", p.Kind, p.Model, p.ID, p.Problem))
			}
		}
		t.Errorf("verify found %d errors (exit %d):\n%s", v.Errors, r.code, strings.Join(errs, "\n"))
	}
}

// snapshot is a database and, for commands that use one, a folder, saved
// so that every run starts from the same state. The database is put back
// at its own path: a database opened at another path is a copy, which gets
// a new instance id and so would serialize other versions.
type snapshot struct {
	db, dbCopy       string
	stick, stickCopy string // "" when the command uses no folder
}

func takeSnapshot(t *testing.T, db, stick string) *snapshot {
	t.Helper()
	dir := t.TempDir()
	s := &snapshot{db: db, dbCopy: filepath.Join(dir, "db.sqlite3")}
	a := openApp(t, db)
	a.exec(`VACUUM INTO ?`, s.dbCopy)
	a.db.Close()
	if stick != "" {
		s.stick, s.stickCopy = stick, filepath.Join(dir, "stick")
		if err := os.CopyFS(s.stickCopy, os.DirFS(stick)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// restore puts the database (and the folder) back as they were saved.
func (s *snapshot) restore(t *testing.T) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Remove(s.db + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(s.dbCopy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if s.stick != "" {
		if err := os.RemoveAll(s.stick); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(s.stick, os.DirFS(s.stickCopy)); err != nil {
			t.Fatal(err)
		}
	}
}

// progressEvent is one JSON line the binary prints on stderr with --json.
type progressEvent struct {
	Stage     string `json:"stage"`
	Direction string `json:"direction"`
	Event     string `json:"event"`
	Done      int64  `json:"done"`
	Total     int64  `json:"total"`
}

func (e progressEvent) String() string {
	return fmt.Sprintf("%s %s %s %d/%d", e.Direction, e.Stage, e.Event, e.Done, e.Total)
}

// killPoint names the progress event at which the binary is killed: the
// nth (from 1) event of direction, stage and kind for which when (if set)
// holds.
type killPoint struct {
	name                    string
	direction, stage, event string
	nth                     int
	when                    func(progressEvent) bool
	// late, if set, tells an event of the same stage printed after the
	// kill point that shows the kill landed too late; any event of
	// another stage or direction, or a stage's completion, always does.
	late func(progressEvent) bool
	// anyTime: the point needs no event after it to be missing (the
	// work it aims at is already done).
	anyTime bool
}

// midway holds for an event in the middle of a stage: some records done,
// not all.
func midway(e progressEvent) bool { return e.Done > 0 && e.Done < e.Total }

// allDone holds for an event that reports every record done.
func allDone(e progressEvent) bool { return e.Total > 0 && e.Done == e.Total }

func (k killPoint) matches(e progressEvent) bool {
	return e.Direction == k.direction && e.Stage == k.stage && e.Event == k.event && (k.when == nil || k.when(e))
}

// isLate reports whether e, printed after the kill point, shows that the
// process went on past the stage before the kill took effect.
func (k killPoint) isLate(e progressEvent) bool {
	if k.anyTime {
		return false
	}
	if e.Direction != k.direction || e.Stage != k.stage || (e.Event == "completed" && k.event != "completed") {
		return true
	}
	return k.late != nil && k.late(e)
}

// killAt runs the binary with args and --json and kills it with SIGKILL
// when the event k names appears. It returns the events printed and
// whether one of them shows the kill landed late.
func killAt(t *testing.T, k killPoint, args ...string) (events []progressEvent, late bool) {
	t.Helper()
	cmd := exec.Command(morangoBin, append(slices.Clone(args), "--json")...)
	cmd.Env = env()
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nth := max(k.nth, 1)
	seen := 0
	var other []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		var e progressEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Stage == "" {
			other = append(other, sc.Text())
			continue
		}
		events = append(events, e)
		switch {
		case seen == nth:
			late = late || k.isLate(e)
		case k.matches(e):
			if seen++; seen == nth {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Logf("kill: %v", err)
				}
			}
		}
	}
	werr := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return events, late
		}
	}
	if seen < nth {
		t.Fatalf("morango %s ended (%v) before %s; events:\n%s\n%s", strings.Join(args, " "), werr, k.name,
			eventList(events), strings.Join(other, "\n"))
	}
	t.Fatalf("morango %s ended (%v) before the kill at %s took effect", strings.Join(args, " "), werr, k.name)
	return nil, false
}

func eventList(events []progressEvent) string {
	var l []string
	for _, e := range events {
		l = append(l, e.String())
	}
	return strings.Join(l, "\n")
}

// stickFiles lists a folder's files: those under final names, and the
// temporary files of writes not finished.
func stickFiles(t *testing.T, dir string) (final, temp []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); bundle.IsTemp(n) {
			temp = append(temp, n)
		} else {
			final = append(final, n)
		}
	}
	return final, temp
}

// leaf returns the public key of a chain's last certificate.
func leaf(chain []certs.Link) (*rsa.PublicKey, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate chain")
	}
	c, err := certs.Deserialize(chain[len(chain)-1].Serialized, chain[len(chain)-1].Signature)
	if err != nil {
		return nil, err
	}
	return c.PublicKey, nil
}

// checkComplete fails the test unless every file under a final name in
// dir is a whole bundle or manifest whose digest and signature check.
func checkComplete(t *testing.T, dir string) {
	t.Helper()
	final, _ := stickFiles(t, dir)
	for _, n := range final {
		fh, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		st, err := bundle.Inspect(fh, &bundle.ReaderOptions{
			Verify:         func(h *bundle.Header) (*rsa.PublicKey, error) { return leaf(h.Chain) },
			VerifyManifest: func(m *bundle.Manifest) (*rsa.PublicKey, error) { return leaf(m.Chain) },
		})
		fh.Close()
		if err != nil || !st.DigestValid || st.Signature != bundle.SignatureValid {
			t.Errorf("%s is under its final name but is not a whole, valid file: %v %+v", n, err, st)
		}
	}
}

// bundleRecords returns a bundle's records as sorted JSON lines: what it
// carries, without the transfer's id and date.
func bundleRecords(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := bundle.NewReader(bufio.NewReader(fh), &bundle.ReaderOptions{Unverified: true})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var l []string
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		l = append(l, string(b))
	}
	slices.Sort(l)
	return l
}

// crashRun is one command to kill: its saved inputs, the state before and
// after an uninterrupted run, and what to check of the folder it writes.
type crashRun struct {
	snap          *snapshot
	args          []string
	before, after map[string][]string
	// serialized is the state before with the app's changes serialized,
	// as 'morango serialize' leaves it.
	serialized map[string][]string
	// stick checks the folder after a kill (final false) and after the
	// run that completes (final true).
	stick func(t *testing.T, final bool)
}

// newCrashRun saves the inputs, records the state before, runs the
// command once uninterrupted to learn the state after (reference then
// looks at what it wrote), and puts the inputs back.
func newCrashRun(t *testing.T, db, stick string, args []string, reference func(t *testing.T)) *crashRun {
	t.Helper()
	c := &crashRun{snap: takeSnapshot(t, db, stick), args: args}
	c.before = digestOf(t, db)
	start := time.Now()
	ok(t, append(slices.Clone(args), "--quiet")...)
	t.Logf("uninterrupted morango %s: %v", args[0], time.Since(start).Round(time.Millisecond))
	c.after = digestOf(t, db)
	if d := differ(c.before, c.after); d == "" {
		t.Fatal("the command changes nothing in the database")
	}
	if reference != nil {
		reference(t)
	}
	c.snap.restore(t)
	ok(t, "serialize", "--db", db)
	c.serialized = digestOf(t, db)
	c.snap.restore(t)
	return c
}

// attempts bounds the runs of a kill point whose kill lands late.
const attempts = 4

// kill runs the command until k, kills it, checks what it left, runs it
// again and checks that this completes it.
func (c *crashRun) kill(t *testing.T, k killPoint) {
	db := c.snap.db
	var events []progressEvent
	for i := 1; ; i++ {
		c.snap.restore(t)
		var late bool
		events, late = killAt(t, k, c.args...)
		if !late {
			break
		}
		if i == attempts {
			t.Errorf("the kill at %s landed after the stage %d times; events:\n%s", k.name, attempts, eventList(events))
			break
		}
		t.Logf("the kill at %s landed late; again", k.name)
	}
	integrity(t, db)
	verifyClean(t, db)
	got := digestOf(t, db)
	switch {
	case differ(got, c.before) == "":
		t.Logf("killed at %s: the database is as before", k.name)
	case differ(got, c.after) == "":
		t.Logf("killed at %s: the database is as after", k.name)
	case differ(got, c.serialized) == "":
		// The database holds the app's changes serialized but nothing of
		// the transfer: no data is lost, but the command did not leave
		// the database as it was.
		t.Errorf("killed at %s: the database is neither as before nor as after: the app's changes were serialized "+
			"and committed before the transfer (vs before: %s)", k.name, differ(got, c.before))
	default:
		t.Fatalf("killed at %s: the database holds neither the state before nor after: vs before: %s; vs after: %s",
			k.name, differ(got, c.before), differ(got, c.after))
	}
	if c.stick != nil {
		c.stick(t, false)
	}

	ok(t, append(slices.Clone(c.args), "--quiet")...)
	integrity(t, db)
	if d := differ(digestOf(t, db), c.after); d != "" {
		t.Errorf("after the kill at %s, the next run left a state that differs from an uninterrupted run's: %s", k.name, d)
	}
	if c.stick != nil {
		c.stick(t, true)
	}
}

// runPoints runs, each in a subtest, the kill points for which run holds;
// then it puts the inputs back as they were saved.
func (c *crashRun) runPoints(t *testing.T, run func(name string) bool, points []killPoint) {
	for _, k := range points {
		if run(k.name) {
			t.Run(k.name, func(t *testing.T) { c.kill(t, k) })
		}
	}
	c.snap.restore(t)
}
