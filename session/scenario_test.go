package session_test

// The seeded convergence scenario: several devices, each a real SQLite file
// written by its app with plain SQL, exchange signed bundle files in random
// order, lose some, import some twice and some late, edit the same rows
// concurrently, delete, re-create and hard-delete, and settle conflicts
// with Resolve. After everyone has heard from everyone, every store and
// every app table must be identical, nothing created may be missing, hard
// deletions must be erased everywhere, a further round must move nothing,
// and store.Verify must find nothing wrong in any device's file.
// In the slow run the apps also skip some of the engine's writes with
// RAISE(IGNORE) triggers for a while, and undo edits of rows whose
// incoming version waits (scenario_apps_test.go).
// TestScenarioFaults (scenario_faults_test.go) runs the same scenario with
// failing sticks, damaged bundles and cancelled imports.
//
// A plain run covers a few hundred seeds, -short a handful, and
// MORANGO_SLOW_TESTS=1 thousands. The seeds' files live in memory
// (/dev/shm) where there is one: see scTmp.
//
// Run one seed:            MORANGO_SEED_BASE=17 MORANGO_SEEDS=1 go test ./session/ -run 'TestConvergenceScenario/seed=17$' -v
// Run many (thousands):    MORANGO_SLOW_TESTS=1 go test ./session/ -run TestConvergenceScenario
// Start elsewhere:         MORANGO_SEED_BASE=100000 MORANGO_SEEDS=500 go test ./session/ -run TestConvergenceScenario
// Keep a seed's files:     MORANGO_SCENARIO_KEEP=/tmp/keep MORANGO_SEED_BASE=17 MORANGO_SEEDS=1 go test ./session/ -run TestConvergenceScenario
// Files on another disk:   MORANGO_SCENARIO_TMP=/var/tmp go test ./session/ -run TestConvergenceScenario

import (
	"context"
	"crypto/rsa"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/session"
	"github.com/morango-sync/morango/store"
)

// scenarioSchema is the app's own schema. person has a partition of its
// own, note references person and itself, summary has a source-id template
// (its id is derived from person and content, so two devices creating "the
// same" summary create the same record) and a "greater progress wins" rule.
const scenarioSchema = `
CREATE TABLE person (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, name TEXT NOT NULL, age INTEGER);
CREATE TABLE note (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, person_id TEXT NOT NULL, parent_id TEXT, body TEXT);
CREATE TABLE summary (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, person_id TEXT NOT NULL, content_id TEXT NOT NULL,
	progress REAL, notes TEXT);
`

// scenarioModels are the profile's models; the scope definitions come from
// the original's fixtures.
const scenarioModels = `[
  {"name": "person", "table": "person", "partition": "${dataset_id}:user-ro:${id}"},
  {"name": "note", "table": "note", "partition": "${dataset_id}:user-rw:${person_id}",
   "foreign_keys": {"person_id": "person", "parent_id": "note"}},
  {"name": "summary", "table": "summary", "partition": "${dataset_id}:user-rw:${person_id}",
   "source_id": "${person_id}:${content_id}", "foreign_keys": {"person_id": "person"},
   "merge": {"prefer": "max", "column": "progress"}}
]`

// scTables lists the app's tables and their columns in table order.
var scTables = []struct {
	name string
	cols []string
}{
	{"person", []string{"id", "dataset_id", "name", "age"}},
	{"note", []string{"id", "dataset_id", "person_id", "parent_id", "body"}},
	{"summary", []string{"id", "dataset_id", "person_id", "content_id", "progress", "notes"}},
}

var scContents = []string{"c0", "c1", "c2"}

// scMaxDevices bounds the devices of one seed; one child certificate each.
const scMaxDevices = 5

// The certificates are made once per test process: RSA key generation is
// slow.
var scFixture struct {
	once     sync.Once
	err      error
	root     *certs.Certificate
	children []*certs.Certificate // with their private keys
	prof     *profile.Profile
}

func scLoadFixture(t testing.TB) {
	t.Helper()
	scFixture.once.Do(func() { scFixture.err = scMakeFixture() })
	if scFixture.err != nil {
		t.Fatal(scFixture.err)
	}
}

func scMakeFixture() error {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "morango", "certificates.json"))
	if err != nil {
		return err
	}
	var ref struct {
		ScopeDefinitions []certs.ScopeDefinition `json:"scope_definitions"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		return err
	}
	var models json.RawMessage = []byte(scenarioModels)
	pj, err := json.Marshal(map[string]any{"profile": "facilitydata", "models": models, "scope_definitions": ref.ScopeDefinitions})
	if err != nil {
		return err
	}
	if scFixture.prof, err = profile.Parse(pj); err != nil {
		return err
	}
	full, ok := scFixture.prof.ScopeDefinition("full-facility")
	if !ok {
		return errors.New("no full-facility scope definition in the fixtures")
	}
	if scFixture.root, err = certs.NewRoot(full, nil); err != nil {
		return err
	}
	// The root's key is not given to the devices: each holds a child of it.
	// The children's keys are generated in parallel: key generation is
	// most of the time of a run of one seed.
	reqs := make([]*certs.Request, scMaxDevices)
	keys := make([]*rsa.PrivateKey, scMaxDevices)
	errs := make([]error, scMaxDevices)
	var wg sync.WaitGroup
	for i := range scMaxDevices {
		wg.Go(func() {
			reqs[i], keys[i], errs[i] = certs.NewRequest(full, map[string]string{"dataset_id": scFixture.root.ID}, scFixture.prof.Name)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range scMaxDevices {
		child, err := scFixture.root.Grant(reqs[i], scFixture.prof)
		if err != nil {
			return err
		}
		child.PrivateKey = keys[i]
		scFixture.children = append(scFixture.children, child)
	}
	return nil
}

func scSlow() bool { return os.Getenv("MORANGO_SLOW_TESTS") == "1" }

func scEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func TestConvergenceScenario(t *testing.T) {
	scLoadFixture(t)
	// With the files in memory, a seed costs about 0.4 s of CPU, nearly
	// all of it the engine's (a transfer commits about fifteen
	// transactions; an export sets up a compressor and a chunk buffer of
	// several MiB, whatever its size): the default run keeps to a few
	// hundred seeds, about 40 s on two cores; the slow one runs thousands.
	tmpl := scTemplates(t)
	totals := &scCounts{m: map[string]int{}}
	scSeeds(t, 200, 2000, 8, func(t *testing.T, seed uint64) { scRun(t, seed, tmpl, totals, false) })
	t.Logf("totals: %v", totals.m)
}

// scSeeds runs run for each seed, as subtests seed=N: def seeds from 1, slow
// ones under MORANGO_SLOW_TESTS=1, short ones under -short; MORANGO_SEEDS
// and MORANGO_SEED_BASE override the count and the first seed. It returns
// the number of seeds.
func scSeeds(t *testing.T, def, slow, short int, run func(t *testing.T, seed uint64)) int {
	t.Helper()
	seeds := def
	if scSlow() {
		seeds = slow
	}
	if testing.Short() {
		seeds = short
	}
	seeds = scEnvInt("MORANGO_SEEDS", seeds)
	base := scEnvInt("MORANGO_SEED_BASE", 1)
	// Seeds run on goroutines of their own, a few more than the CPUs, so
	// that the CPUs stay busy while a seed waits (for fsync, for the
	// second goroutine of its transfer), which -parallel (the number of
	// CPUs) would not overlap.
	workers := scEnvInt("MORANGO_SCENARIO_WORKERS", runtime.GOMAXPROCS(0)+2)
	if os.Getenv("GOGC") == "" {
		// Each export sets up a compressor and a chunk buffer of several
		// MiB and drops them when done: with a larger heap goal the
		// collector runs less often, and fewer pages go back to the OS
		// only to be faulted in again (a sixth of a run's CPU time).
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for seed := range next {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { run(t, uint64(seed)) })
			}
		})
	}
	for seed := base; seed < base+seeds; seed++ {
		next <- seed
	}
	close(next)
	wg.Wait()
	t.Logf("%d seeds from %d on %d goroutines", seeds, base, workers)
	return seeds
}

// scCounts sums what the seeds of a test did, to show what a run covered.
type scCounts struct {
	sync.Mutex
	m map[string]int
}

func (c *scCounts) add(m map[string]int) {
	c.Lock()
	defer c.Unlock()
	for k, v := range m {
		c.m[k] += v
	}
}

// scTemplates makes, once per test run, one initialized database per device
// slot holding its certificates. Most seeds start from copies of them,
// which is much cheaper than initializing fresh files; a copy is opened at
// another path, so it is a database of its own.
func scTemplates(t *testing.T) []string {
	t.Helper()
	ctx, dir := t.Context(), t.TempDir()
	var paths []string
	for i := range scMaxDevices {
		path := filepath.Join(dir, fmt.Sprintf("template%d.sqlite3", i))
		app, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := app.Exec(scenarioSchema); err != nil {
			t.Fatal(err)
		}
		app.Close()
		db, err := store.Init(ctx, path, scFixture.prof, &store.Options{SystemID: fmt.Sprintf("template-%d", i), NodeID: "node"})
		if err != nil {
			t.Fatal(err)
		}
		if err := scSaveCerts(ctx, db, i); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path + "-wal"); err == nil {
			t.Fatalf("template %s left a WAL file behind", path)
		}
		paths = append(paths, path)
	}
	return paths
}

// scSaveCerts stores the shared root (trusted, without its key) and the
// device slot's own child certificate with its key.
func scSaveCerts(ctx context.Context, db *store.DB, i int) error {
	if err := db.SaveCertificate(ctx, scFixture.root, "", true); err != nil {
		return err
	}
	child := scFixture.children[i]
	return db.SaveCertificate(ctx, child, certs.PrivateKeyString(child.PrivateKey), false)
}

// device is one test device: the app's own connection and the engine.
type scDevice struct {
	idx  int
	path string
	app  *sql.DB
	db   *store.DB
	cert string
	inst string
	// manifest is the last manifest this device wrote to the stick.
	manifest string
}

// scBundle is a bundle written to the stick.
type scBundle struct {
	path   string
	from   int
	to     int // -1: for anyone
	seq    int // order of writing
	transf string
}

type scSim struct {
	t    *testing.T
	ctx  context.Context
	seed uint64
	rng  *rand.Rand
	dir  string
	devs []*scDevice
	root string // the dataset id: every partition starts with it

	bundles   int
	pending   []*scBundle
	applied   map[string]map[int]bool // bundle path -> devices that applied it
	newest    map[[2]int]int          // (sender, receiver) -> newest bundle applied
	trace     []string
	created   map[string]string // id -> model, every record any store has held
	hardDel   map[string]bool   // ids hard-deleted by some device
	recreated map[string]bool   // ids re-created on a device whose store held a hard deletion
	stats     map[string]int
	// faults injects failures into exports and imports; final is set for
	// the last rounds, where a failed transfer is always tried again.
	faults, final bool
	// waits has the app refuse the engine's updates during some imports
	// and then edit or delete rows whose versions wait (random scenarios
	// only; the targeted tests built by newTestSim write what they say).
	waits bool
	// steps counts the steps; ignores are the app triggers that skip
	// some of the engine's writes until their step (random scenarios
	// only, see scenario_apps_test.go).
	steps   int
	ignores []scIgnore
}

func (s *scSim) logf(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf(format, args...))
}

// fail stops the seed, with the seed and the steps that led there.
func (s *scSim) fail(format string, args ...any) {
	s.t.Helper()
	tail := s.trace
	if len(tail) > 60 {
		tail = tail[len(tail)-60:]
	}
	s.t.Fatalf("seed %d: %s\nlast steps:\n  %s\nreproduce: MORANGO_SEED_BASE=%d MORANGO_SEEDS=1 go test ./session/ -run '%s$' -v",
		s.seed, fmt.Sprintf(format, args...), strings.Join(tail, "\n  "), s.seed, s.t.Name())
}

func (s *scSim) check(err error, what string, args ...any) {
	s.t.Helper()
	if err != nil {
		s.fail("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// rid returns an id drawn from the seed, so a seed replays the same ids.
func (s *scSim) rid() string {
	return fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
}

func (s *scSim) newDevice(i int, template string) *scDevice {
	t, ctx := s.t, s.ctx
	d := &scDevice{idx: i, path: filepath.Join(s.dir, fmt.Sprintf("dev%d.sqlite3", i)), cert: scFixture.children[i].ID}
	if template != "" {
		data, err := os.ReadFile(template)
		s.check(err, "read template")
		s.check(os.WriteFile(d.path, data, 0o600), "copy template")
	}
	app, err := sql.Open("sqlite", d.path+"?_pragma=busy_timeout(10000)")
	s.check(err, "open app db")
	t.Cleanup(func() { app.Close() })
	d.app = app
	opts := &store.Options{SystemID: fmt.Sprintf("sys-%d-%d", s.seed, i), NodeID: "node"}
	var db *store.DB
	if template == "" {
		_, err = app.Exec(scenarioSchema)
		s.check(err, "app schema")
		if scCascadeOn() {
			_, err = app.Exec(scCascadeTrigger)
			s.check(err, "app trigger")
		}
		if scWelcomeOn() {
			_, err = app.Exec(scWelcomeTrigger)
			s.check(err, "app trigger")
		}
		db, err = store.Init(ctx, d.path, scFixture.prof, opts)
		s.check(err, "init device %d", i)
		s.check(db.Close(), "close")
	}
	// The database id is random; give it one drawn from the seed so that
	// instance ids, and with them every tie-break, replay with the seed.
	_, err = app.Exec(`UPDATE morango_databaseid SET id = ?; DELETE FROM morango_instanceid;`, s.rid())
	s.check(err, "seed the database id")
	db, err = store.Open(ctx, d.path, opts)
	s.check(err, "open device %d", i)
	t.Cleanup(func() { db.Close() })
	d.db = db
	if template == "" {
		s.check(scSaveCerts(ctx, db, i), "save certificates")
	}
	in, err := db.Instance(ctx)
	s.check(err, "instance")
	d.inst = in.ID
	for _, o := range s.devs {
		if o.inst == d.inst {
			s.fail("devices %d and %d share instance %s", o.idx, i, d.inst)
		}
	}
	return d
}

// scDir is the seed's folder: the databases and the stick, in scTmp. With
// MORANGO_SCENARIO_KEEP set to a folder, it is kept there for inspection.
func scDir(t *testing.T, seed uint64) string {
	keep := os.Getenv("MORANGO_SCENARIO_KEEP")
	if keep == "" {
		tmp := scTmp()
		if tmp == "" {
			return t.TempDir()
		}
		dir, err := os.MkdirTemp(tmp, "morango-scenario-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	dir := filepath.Join(keep, strings.NewReplacer("/", "-", "=", "-").Replace(t.Name()))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: files kept in %s", seed, dir)
	return dir
}

// scTmp is the folder the seeds' folders are made in: MORANGO_SCENARIO_TMP
// if set, else /dev/shm where it is a writable folder (memory, on Linux),
// else "" for the test's temporary folder. The scenario checks what the
// engine computes, not what survives a power cut (the crash tests do, on
// disk); on a disk, a seed waits for fsync most of its time, and two seeds
// at once hardly go faster than one.
var scTmp = sync.OnceValue(func() string {
	if dir := os.Getenv("MORANGO_SCENARIO_TMP"); dir != "" {
		return dir
	}
	probe, err := os.MkdirTemp("/dev/shm", "morango-scenario-")
	if err != nil {
		return ""
	}
	os.Remove(probe)
	return "/dev/shm"
})

// scRun plays one seed, with faults injected into exchanges if faults is
// set (see scenario_faults_test.go), and adds what it did to totals.
func scRun(t *testing.T, seed uint64, templates []string, totals *scCounts, faults bool) {
	s := &scSim{
		t: t, ctx: context.Background(), seed: seed,
		rng:     rand.New(rand.NewPCG(seed, 0x6d6f72616e676f)),
		dir:     scDir(t, seed),
		root:    scFixture.root.ID,
		applied: map[string]map[int]bool{}, newest: map[[2]int]int{}, created: map[string]string{},
		hardDel: map[string]bool{}, recreated: map[string]bool{}, stats: map[string]int{},
		faults: faults, waits: true,
	}
	n := 4
	if s.rng.IntN(4) == 0 {
		n = 5
	}
	// Every tenth seed initializes fresh files.
	fresh := seed%10 == 0
	for i := range n {
		tmpl := templates[i]
		if fresh {
			tmpl = ""
		}
		s.devs = append(s.devs, s.newDevice(i, tmpl))
	}
	ops := 14 + s.rng.IntN(12)
	for range ops {
		s.step()
	}
	// Bundles still on the stick arrive newest first, or never.
	for i := len(s.pending) - 1; i >= 0; i-- {
		if s.rng.IntN(3) > 0 {
			s.deliver(i)
		} else {
			s.logf("   lost %s", filepath.Base(s.pending[i].path))
			s.stats["lost"]++
		}
	}
	s.pending = nil
	// Some devices settle a conflict just before the last rounds, perhaps
	// the same one as another device: the decisions meet in the rounds.
	for _, d := range s.devs {
		if s.rng.IntN(3) == 0 {
			s.resolve(d)
		}
	}
	// The apps drop the triggers that skip the engine's writes and have
	// it write what waits.
	s.dropIgnores(true)
	s.logf("-- final rounds")
	s.final = true
	s.converge()
	s.assertConverged()
	s.verify()
	if testing.Verbose() {
		t.Logf("seed %d: %d devices, %d steps, %v", seed, n, ops, s.stats)
	}
	totals.add(s.stats)
}

// step makes a few app changes (cheap), and sometimes moves a bundle (dear).
func (s *scSim) step() {
	s.steps++
	if s.waits && scIgnoreOn() {
		s.dropIgnores(false)
		if s.rng.IntN(3) == 0 {
			s.ignoreWrites()
		}
		// The app edits rows whose incoming version waits while it skips
		// the engine's writes.
		if d := s.dev(); s.ignoring(d) && s.rng.IntN(2) == 0 {
			s.waitingEdits(d)
		}
	}
	for range 1 + s.rng.IntN(3) {
		if s.rng.IntN(5) == 0 {
			s.concurrentEdit()
		} else {
			s.edit(s.dev())
		}
	}
	if s.rng.IntN(8) == 0 {
		s.resolve(s.conflicted())
	}
	switch r := s.rng.IntN(100); {
	case r < 30:
		s.exchange()
	case r < 45 && len(s.pending) > 0:
		s.deliverPending()
	case r < 52:
		s.broadcast()
	}
}

func (s *scSim) dev() *scDevice { return s.devs[s.rng.IntN(len(s.devs))] }

func (s *scSim) exec(d *scDevice, q string, args ...any) {
	s.t.Helper()
	_, err := d.app.Exec(q, args...)
	s.check(err, "device %d: %s", d.idx, q)
}

// liveIDs lists the ids of a table's app rows on d.
func (s *scSim) liveIDs(d *scDevice, table string) []string {
	s.t.Helper()
	// Summary ids derive from the root certificate's id, which differs
	// between runs: order them by what the seed chose.
	order := "id"
	if table == "summary" {
		order = "person_id, content_id"
	}
	rows, err := d.app.Query(`SELECT id FROM ` + table + ` ORDER BY ` + order)
	s.check(err, "list %s", table)
	defer rows.Close()
	var l []string
	for rows.Next() {
		var id string
		s.check(rows.Scan(&id), "scan")
		l = append(l, id)
	}
	return l
}

func (s *scSim) queryIDs(d *scDevice, q string, args ...any) []string {
	s.t.Helper()
	rows, err := d.app.Query(q, args...)
	s.check(err, "%s", q)
	defer rows.Close()
	var l []string
	for rows.Next() {
		var id string
		s.check(rows.Scan(&id), "scan")
		l = append(l, id)
	}
	return l
}

func (s *scSim) pick(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[s.rng.IntN(len(l))]
}

// scStoreOrder orders store records by what the seed chose (partitions
// share the root's id as their prefix; summaries have a source id).
const scStoreOrder = "model_name, partition, source_id, id"

var scWords = []string{"ada", "bo", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo", "quote'd", "ünï", "x\ny", ""}

func (s *scSim) word() string {
	return scWords[s.rng.IntN(len(scWords))] + strconv.Itoa(s.rng.IntN(100))
}

// progress returns a progress value: sometimes a round number, sometimes an
// arbitrary double, sometimes NULL.
func (s *scSim) progress() any {
	switch s.rng.IntN(5) {
	case 0:
		return nil
	case 1:
		return s.rng.Float64()
	case 2:
		return s.rng.IntN(3)
	}
	return float64(s.rng.IntN(8)) / 4
}

func (s *scSim) summaryID(person, content string) string {
	return ids.Namespaced(s.root+":user-rw:"+person, person+":"+content, "summary")
}

// noteInsert records an app insert of an id whose store
// record on d is hard-deleted: a re-creation after a hard deletion.
func (s *scSim) noteInsert(d *scDevice, id, model string) {
	var hd bool
	err := d.app.QueryRow(`SELECT hard_deleted FROM morango_store WHERE id = ?`, id).Scan(&hd)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		s.check(err, "read store row")
	}
	if hd {
		s.recreated[id] = true
		s.stats["recreate-after-hard-delete"]++
	}
}

// observe records the records d's store holds: every one must still exist,
// everywhere, at the end. (An app row created and deleted again between two
// serializations never becomes a record.)
func (s *scSim) observe(d *scDevice) {
	s.t.Helper()
	rows, err := d.app.Query(`SELECT id, model_name FROM morango_store`)
	s.check(err, "list records")
	defer rows.Close()
	for rows.Next() {
		var id, model string
		s.check(rows.Scan(&id, &model), "scan")
		s.created[id] = model
	}
}

// edit makes one app change on d with plain SQL (or a hard delete through
// the engine).
func (s *scSim) edit(d *scDevice) {
	persons := s.liveIDs(d, "person")
	switch r := s.rng.IntN(100); {
	case r < 15 || len(persons) == 0:
		id := s.rid()
		s.logf("dev%d: insert person %s", d.idx, id[:6])
		s.noteInsert(d, id, "person")
		s.exec(d, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, ?, ?)`, id, s.root, s.word(), s.rng.IntN(90))
		s.stats["insert"]++
	case r < 30:
		p := s.pick(persons)
		id := s.rid()
		var parent any
		if notes := s.liveIDs(d, "note"); len(notes) > 0 && s.rng.IntN(2) == 0 {
			parent = s.pick(notes)
		}
		s.logf("dev%d: insert note %s of %s (parent %v)", d.idx, id[:6], p[:6], parent)
		s.noteInsert(d, id, "note")
		s.exec(d, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, ?)`, id, s.root, p, parent, s.word())
		s.stats["insert"]++
	case r < 45:
		// Insert or update: a summary's id is derived from person and
		// content, so devices that never met create the same record.
		p := s.pick(persons)
		c := scContents[s.rng.IntN(len(scContents))]
		id := s.summaryID(p, c)
		s.logf("dev%d: upsert summary %s (%s, %s)", d.idx, id[:6], p[:6], c)
		s.noteInsert(d, id, "summary")
		s.exec(d, `INSERT INTO summary (id, dataset_id, person_id, content_id, progress, notes) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET progress = excluded.progress, notes = excluded.notes`, id, s.root, p, c, s.progress(), s.word())
		s.stats["upsert"]++
	case r < 65:
		s.update(d, s.rng.IntN(len(scTables)), "")
	case r < 78:
		s.softDelete(d)
	case r < 88:
		s.recreate(d)
	default:
		s.hardDelete(d, "", "")
	}
}

// update changes a live row of table ti on d (id "" means a random one).
func (s *scSim) update(d *scDevice, ti int, id string) {
	table := scTables[ti].name
	if id == "" {
		id = s.pick(s.liveIDs(d, table))
	}
	if id == "" {
		return
	}
	s.logf("dev%d: update %s %s", d.idx, table, id[:6])
	s.stats["update"]++
	switch table {
	case "person":
		s.exec(d, `UPDATE person SET name = ?, age = ? WHERE id = ?`, s.word(), s.rng.IntN(90), id)
	case "note":
		s.exec(d, `UPDATE note SET body = ? WHERE id = ?`, s.word(), id)
	case "summary":
		s.exec(d, `UPDATE summary SET progress = ?, notes = ? WHERE id = ?`, s.progress(), s.word(), id)
	}
}

func (s *scSim) softDelete(d *scDevice) {
	ti := s.rng.IntN(len(scTables))
	table := scTables[ti].name
	id := s.pick(s.liveIDs(d, table))
	if id == "" {
		return
	}
	s.stats["delete"]++
	s.appDelete(d, table, id)
}

// appDelete deletes an app row as an app that keeps its references intact
// does: with the rows that refer to it (as ON DELETE CASCADE would).
func (s *scSim) appDelete(d *scDevice, table, id string) {
	s.logf("dev%d: delete %s %s and what refers to it", d.idx, table, id[:6])
	const replies = `WITH RECURSIVE sub(id) AS (SELECT id FROM note WHERE %s UNION SELECT n.id FROM note n JOIN sub ON n.parent_id = sub.id)
		DELETE FROM note WHERE id IN (SELECT id FROM sub)`
	switch table {
	case "person":
		s.exec(d, fmt.Sprintf(replies, "person_id = ?"), id)
		s.exec(d, `DELETE FROM summary WHERE person_id = ?`, id)
	case "note":
		s.exec(d, fmt.Sprintf(replies, "id = ?"), id)
	}
	s.exec(d, `DELETE FROM `+table+` WHERE id = ?`, id)
}

// recreate inserts again an app row whose record is deleted in d's store,
// with its identity (partition, source id) and new content.
func (s *scSim) recreate(d *scDevice) {
	rows, err := d.app.Query(`SELECT id, model_name, partition FROM morango_store WHERE deleted ORDER BY ` + scStoreOrder)
	s.check(err, "deleted records")
	type rec struct{ id, model, partition string }
	var l []rec
	for rows.Next() {
		var r rec
		s.check(rows.Scan(&r.id, &r.model, &r.partition), "scan")
		l = append(l, r)
	}
	rows.Close()
	if len(l) == 0 {
		return
	}
	r := l[s.rng.IntN(len(l))]
	var exists bool
	s.check(d.app.QueryRow(`SELECT EXISTS (SELECT 1 FROM `+r.model+` WHERE id = ?)`, r.id).Scan(&exists), "exists")
	if exists {
		return
	}
	_, person, _ := strings.Cut(strings.TrimPrefix(r.partition, s.root+":"), ":")
	if r.model != "person" {
		// The app refers only to persons it shows.
		s.check(d.app.QueryRow(`SELECT EXISTS (SELECT 1 FROM person WHERE id = ?)`, person).Scan(&exists), "exists")
		if !exists {
			return
		}
	}
	s.logf("dev%d: re-create %s %s", d.idx, r.model, r.id[:6])
	s.noteInsert(d, r.id, r.model)
	s.stats["recreate"]++
	switch r.model {
	case "person":
		s.exec(d, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, ?, ?)`, r.id, s.root, s.word(), s.rng.IntN(90))
	case "note":
		s.exec(d, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, ?)`, r.id, s.root, person, s.word())
	case "summary":
		for _, c := range scContents {
			if s.summaryID(person, c) == r.id {
				s.exec(d, `INSERT INTO summary (id, dataset_id, person_id, content_id, progress, notes) VALUES (?, ?, ?, ?, ?, ?)`,
					r.id, s.root, person, c, s.progress(), s.word())
				return
			}
		}
		s.fail("summary %s matches no content", r.id)
	}
}

// hardDelete erases a record on d: a given one, or a random record of its
// store (live or deleted).
func (s *scSim) hardDelete(d *scDevice, model, id string) {
	if id == "" {
		rows, err := d.app.Query(`SELECT id, model_name FROM morango_store WHERE NOT hard_deleted ORDER BY ` + scStoreOrder)
		s.check(err, "records")
		var ids, models []string
		for rows.Next() {
			var x, m string
			s.check(rows.Scan(&x, &m), "scan")
			ids, models = append(ids, x), append(models, m)
		}
		rows.Close()
		if len(ids) == 0 {
			return
		}
		i := s.rng.IntN(len(ids))
		id, model = ids[i], models[i]
	}
	// The app first deletes the rows that refer to it.
	switch model {
	case "person":
		for _, n := range s.queryIDs(d, `SELECT id FROM note WHERE person_id = ?`, id) {
			s.appDelete(d, "note", n)
		}
		s.exec(d, `DELETE FROM summary WHERE person_id = ?`, id)
	case "note":
		for _, n := range s.queryIDs(d, `SELECT id FROM note WHERE parent_id = ?`, id) {
			s.appDelete(d, "note", n)
		}
	}
	s.logf("dev%d: hard delete %s %s", d.idx, model, id[:6])
	s.stats["hard-delete"]++
	var inStore bool
	s.check(d.app.QueryRow(`SELECT EXISTS (SELECT 1 FROM morango_store WHERE id = ?)`, id).Scan(&inStore), "read store row")
	if !inStore {
		// d never serialized the row: HardDelete makes it a record first,
		// so that a record of the same id made on another device (a
		// summary's id derives from its person and content) is erased too.
		s.stats["hard-delete-unserialized"]++
	}
	s.hardDel[id] = true
	s.check(d.db.HardDelete(s.ctx, model, id), "hard delete %s %s on device %d", model, id, d.idx)
	s.observe(d)
}

// concurrentEdit changes one record on two devices that both hold it,
// before either hears of the other's change.
func (s *scSim) concurrentEdit() {
	a, b := s.pair()
	ti := s.rng.IntN(len(scTables))
	table := scTables[ti].name
	inB := map[string]bool{}
	for _, id := range s.liveIDs(b, table) {
		inB[id] = true
	}
	var both []string
	for _, id := range s.liveIDs(a, table) {
		if inB[id] {
			both = append(both, id)
		}
	}
	id := s.pick(both)
	if id == "" {
		s.edit(a)
		return
	}
	s.logf("dev%d+dev%d: concurrent change of %s %s", a.idx, b.idx, table, id[:6])
	s.stats["conflict"]++
	s.update(a, ti, id)
	switch s.rng.IntN(6) {
	case 0:
		s.appDelete(b, table, id)
	case 1:
		s.hardDelete(b, table, id)
	default:
		s.update(b, ti, id)
	}
	// Sometimes one side serializes before the other changes again.
	if s.rng.IntN(3) == 0 {
		_, err := a.db.Serialize(s.ctx)
		s.check(err, "serialize")
		s.observe(a)
		s.update(a, ti, id)
	}
}

// resolve has d list its conflicts, of one model or of all, and settle one,
// keeping a version drawn from the seed. The decision is a new version by
// d, which must spread like any edit.
func (s *scSim) resolve(d *scDevice) {
	s.t.Helper()
	model := ""
	if s.rng.IntN(2) == 0 {
		model = scTables[s.rng.IntN(len(scTables))].name
	}
	listed := map[string]store.Conflict{}
	err := d.db.Conflicts(s.ctx, model, func(c store.Conflict) error {
		if model != "" && c.Model != model || len(c.Lost) == 0 {
			return fmt.Errorf("asked for model %q, listed %+v", model, c)
		}
		listed[c.ID] = c
		return nil
	})
	s.check(err, "conflicts on device %d", d.idx)
	// Conflicts come in id order, and summary ids derive from the root
	// certificate, which each run makes anew: pick in the order the seed
	// chose.
	q := `SELECT id FROM morango_store WHERE conflicting_serialized_data <> ''`
	if model != "" {
		q += ` AND model_name = '` + model + `'`
	}
	var ids []string
	for _, id := range s.queryIDs(d, q+` ORDER BY `+scStoreOrder) {
		if _, ok := listed[id]; ok {
			ids = append(ids, id)
		}
	}
	if len(ids) != len(listed) {
		s.fail("device %d: Conflicts listed %d records, %d of them with conflicting data", d.idx, len(listed), len(ids))
	}
	if len(ids) == 0 {
		return
	}
	c := listed[s.pick(ids)]
	versions := append([]merge.Version{c.Shown}, c.Lost...)
	v := versions[s.rng.IntN(len(versions))]
	keep := store.VersionName(v)
	if s.rng.IntN(2) == 0 {
		// A prefix of the instance id of at least 8 characters will do.
		keep = v.Instance[:8+s.rng.IntN(len(v.Instance)-7)] + ":" + strconv.FormatInt(v.Counter, 10)
	}
	s.logf("dev%d: resolve %s %s (%d lost) keeping %s", d.idx, c.Model, c.ID[:6], len(c.Lost), keep)
	var edited bool
	s.check(d.app.QueryRow(`SELECT EXISTS (SELECT 1 FROM morango_dirty WHERE model = ? AND id = ?)`, c.Model, c.ID).Scan(&edited), "dirty")
	res, err := d.db.Resolve(s.ctx, c.ID, keep)
	if errors.Is(err, store.ErrNoConflict) && edited {
		// Resolve serializes first: an edit in the app settled it.
		s.observe(d)
		s.stats["resolve-settled-by-edit"]++
		return
	}
	if err != nil && edited && strings.Contains(err.Error(), "has no single version") {
		// An app edit of a row whose head waited superseded the chosen
		// version but keeps a conflict (EditBeside).
		s.observe(d)
		s.stats["resolve-superseded-by-edit"]++
		return
	}
	s.check(err, "device %d: resolve %s %s keeping %s", d.idx, c.Model, c.ID, keep)
	s.observe(d)
	s.stats["resolve"]++
	if res.Pending != "" {
		s.stats["resolve-pending"]++
	}
	same := func(a, b merge.Version) bool {
		return a.Serialized == b.Serialized && a.Deleted == b.Deleted && !a.HardDeleted && !b.HardDeleted
	}
	if res.Kept.Instance != v.Instance || res.Kept.Counter != v.Counter || !same(res.Kept, v) {
		s.fail("device %d: resolve %s keeping %s kept %+v, want %+v", d.idx, c.ID, keep, res.Kept, v)
	}
	if res.Version.Instance != d.inst || !same(res.Version, v) {
		s.fail("device %d: resolve %s made version %+v, want one of instance %s with the kept data", d.idx, c.ID, res.Version, d.inst)
	}
	// The record's head is the decision, and no conflict is left.
	var head merge.Version
	var conflicting string
	err = d.app.QueryRow(`SELECT serialized, deleted, hard_deleted, last_saved_instance, last_saved_counter, conflicting_serialized_data
		FROM morango_store WHERE id = ?`, c.ID).Scan(&head.Serialized, &head.Deleted, &head.HardDeleted, &head.Instance, &head.Counter, &conflicting)
	s.check(err, "read record %s", c.ID)
	if head != res.Version {
		s.fail("device %d: after resolve, record %s holds %+v, want %+v", d.idx, c.ID, head, res.Version)
	}
	sibs, err := merge.DecodeSiblings(conflicting)
	s.check(err, "siblings of %s", c.ID)
	for _, x := range sibs {
		if !x.HardDeleted {
			s.fail("device %d: after resolve, record %s still holds the conflicting version %+v", d.idx, c.ID, x)
		}
	}
	// The app shows the decision at once, unless the row waits for one it
	// refers to, or refers to one that is deleted: then the row is removed
	// and the next serialization records its deletion.
	row := s.appRow(d, c.Model, c.ID)
	switch {
	case res.Pending != "":
	case v.Deleted && row != "":
		s.fail("device %d: resolve %s kept a deletion, the app still holds %s", d.idx, c.ID, row)
	case !v.Deleted && row == "" && s.orphaned(d, c.Model, c.ID, v.Serialized):
		s.stats["resolve-orphaned"]++
	case !v.Deleted && row != v.Serialized:
		s.fail("device %d: resolve %s: the app holds %q, want %q", d.idx, c.ID, row, v.Serialized)
	}
}

// orphaned reports whether an app row with data refers to a row d's app
// does not hold, and its removal waits to be serialized.
func (s *scSim) orphaned(d *scDevice, model, id, data string) bool {
	s.t.Helper()
	var row map[string]any
	s.check(json.Unmarshal([]byte(data), &row), "data of %s", id)
	var missing bool
	for col, table := range map[string]string{"person_id": "person", "parent_id": "note"} {
		if ref, ok := row[col].(string); ok && s.appRow(d, table, ref) == "" {
			missing = true
		}
	}
	var dirty bool
	s.check(d.app.QueryRow(`SELECT EXISTS (SELECT 1 FROM morango_dirty WHERE model = ? AND id = ?)`, model, id).Scan(&dirty), "dirty")
	return missing && dirty
}

// conflicted returns a device whose store holds conflicting versions,
// drawn from the seed, or any device if none does.
func (s *scSim) conflicted() *scDevice {
	var l []*scDevice
	for _, d := range s.devs {
		var yes bool
		s.check(d.app.QueryRow(`SELECT EXISTS (SELECT 1 FROM morango_store WHERE conflicting_serialized_data <> '')`).Scan(&yes), "conflicts")
		if yes {
			l = append(l, d)
		}
	}
	if len(l) == 0 {
		return s.dev()
	}
	return l[s.rng.IntN(len(l))]
}

func (s *scSim) pair() (*scDevice, *scDevice) {
	i := s.rng.IntN(len(s.devs))
	j := s.rng.IntN(len(s.devs) - 1)
	if j >= i {
		j++
	}
	return s.devs[i], s.devs[j]
}

// writeManifest has d write a fresh manifest to the stick.
func (s *scSim) writeManifest(d *scDevice) string {
	path := filepath.Join(s.dir, fmt.Sprintf("dev%d-%d.manifest", d.idx, s.bundles))
	s.bundles++
	_, err := session.WriteManifest(s.ctx, d.db, nil, path, session.ManifestOptions{CertID: d.cert, Name: fmt.Sprintf("dev%d", d.idx)})
	s.check(err, "manifest of device %d", d.idx)
	s.observe(d)
	d.manifest = path
	return path
}

// export writes a bundle from a: for b's manifest when manifest is set,
// otherwise for anyone. It returns nil when SkipEmpty left nothing to write.
func (s *scSim) export(a *scDevice, to int, manifest string, skipEmpty bool) (*scBundle, *session.ExportResult) {
	s.t.Helper()
	if s.faults && s.rng.IntN(4) == 0 {
		// The first stick fails; the export is run again on another.
		s.failExport(a, manifest, skipEmpty)
	}
	bf := &scBundle{path: filepath.Join(s.dir, fmt.Sprintf("b%04d-dev%d.bundle", s.bundles, a.idx)), from: a.idx, to: to, seq: s.bundles}
	s.bundles++
	res, err := session.Export(s.ctx, a.db, &session.DiskConnection{Bundle: bf.path, Manifest: manifest}, session.ExportOptions{CertID: a.cert, SkipEmpty: skipEmpty})
	s.check(err, "export from device %d", a.idx)
	s.observe(a)
	if res.ForPeer != (manifest != "") {
		s.fail("export from device %d: ForPeer %v with manifest %q", a.idx, res.ForPeer, manifest)
	}
	bf.transf = res.TransferID
	if skipEmpty && res.Records == 0 {
		if _, err := os.Stat(bf.path); !errors.Is(err, os.ErrNotExist) {
			s.fail("export with SkipEmpty and nothing to send wrote %s (%v)", bf.path, err)
		}
		return nil, res
	}
	s.stats["exported-records"] += int(res.Records)
	return bf, res
}

// importBundle applies bf on d. A bundle d has applied already must be
// refused with ErrAlreadyApplied and change nothing. With faults, the
// import may first fail (see failImport); a bundle given up after a fault
// is lost, and one applied by the failed import is imported again.
func (s *scSim) importBundle(bf *scBundle, d *scDevice) {
	s.t.Helper()
	if s.applied[bf.path] == nil {
		s.applied[bf.path] = map[int]bool{}
	}
	if s.applied[bf.path][d.idx] {
		s.logf("dev%d: import %s again", d.idx, filepath.Base(bf.path))
		s.stats["repeat-import"]++
		before := s.snapshot(d)
		_, err := session.Import(s.ctx, d.db, &session.DiskConnection{Bundle: bf.path}, session.ImportOptions{})
		if !errors.Is(err, store.ErrAlreadyApplied) || !session.IsAlreadyApplied(err) {
			s.fail("device %d: second import of %s: got %v, want ErrAlreadyApplied", d.idx, bf.path, err)
		}
		if after := s.snapshot(d); after != before {
			s.fail("device %d: a refused second import of %s changed the database", d.idx, bf.path)
		}
		return
	}
	var outcome scOutcome
	if s.faults && s.rng.IntN(3) == 0 {
		if outcome = s.failImport(bf, d); outcome == scGaveUp {
			return
		}
	}
	key := [2]int{bf.from, d.idx}
	late := s.newest[key] > bf.seq
	s.newest[key] = max(s.newest[key], bf.seq)
	if late {
		s.stats["late-import"]++
	}
	if outcome == scApplied {
		return
	}
	s.logf("dev%d: import %s (from dev%d%s)", d.idx, filepath.Base(bf.path), bf.from, map[bool]string{true: ", after a newer one"}[late])
	// Sometimes the app refuses the engine's updates during the import (a
	// row open in the app): incoming versions of rows the app holds wait,
	// and the app then edits or deletes some of those rows.
	busy := s.waits && !s.final && os.Getenv("MORANGO_SC_WAITING") != "0" && s.rng.IntN(2) == 0
	if busy {
		for _, tb := range scTables {
			s.exec(d, fmt.Sprintf(`CREATE TRIGGER busy_%[1]s BEFORE UPDATE ON %[1]s WHEN EXISTS (SELECT 1 FROM morango_applying)
				BEGIN SELECT RAISE(ABORT, 'the row is open'); END`, tb.name))
		}
	}
	res, err := session.Import(s.ctx, d.db, &session.DiskConnection{Bundle: bf.path}, session.ImportOptions{})
	s.check(err, "device %d: import %s", d.idx, bf.path)
	s.observe(d)
	s.imported(bf, d, res)
	if s.waits && scAppsOn() {
		s.checkWritten(d)
	}
	if busy || s.waits && s.ignoring(d) {
		s.waitingEdits(d)
	}
	if busy {
		for _, tb := range scTables {
			s.exec(d, `DROP TRIGGER busy_`+tb.name)
		}
	}
	if outcome == scResume && !res.Resumed {
		s.fail("device %d: the import of %s after a cancelled one did not resume its transfer session", d.idx, bf.path)
	}
}

// imported checks the result of an import of bf on d that succeeded, and
// records it.
func (s *scSim) imported(bf *scBundle, d *scDevice, res *session.ImportResult) {
	s.t.Helper()
	if res.Store.Refused > 0 {
		s.fail("device %d: import %s refused %d records: %+v", d.idx, bf.path, res.Store.Refused, res.Store.Refusals)
	}
	s.stats["conflicts-merged"] += int(res.Store.Conflicts)
	s.applied[bf.path][d.idx] = true
}

// exchange carries a bundle from a to b: for b's fresh or stale manifest, or
// for anyone; then imports it at once, keeps it for later, or loses it.
func (s *scSim) exchange() {
	a, b := s.pair()
	var manifest string
	switch r := s.rng.IntN(100); {
	case r < 55:
		manifest = s.writeManifest(b)
	case r < 75 && b.manifest != "":
		manifest = b.manifest // stale: b may hold more by now
		s.stats["stale-manifest"]++
	}
	to := b.idx
	if manifest == "" {
		to = -1
	}
	bf, res := s.export(a, to, manifest, s.rng.IntN(2) == 0)
	s.logf("dev%d -> dev%d: export %d records (manifest %q)", a.idx, b.idx, res.Records, filepath.Base(manifest))
	if bf == nil {
		return
	}
	switch r := s.rng.IntN(100); {
	case r < 10:
		s.logf("   lost %s", filepath.Base(bf.path))
		s.stats["lost"]++
	case r < 40:
		s.pending = append(s.pending, bf)
	default:
		s.importBundle(bf, b)
		if s.rng.IntN(6) == 0 {
			s.importBundle(bf, b)
		}
	}
}

// broadcast writes a bundle for anyone and carries it to some devices.
func (s *scSim) broadcast() {
	a := s.dev()
	bf, res := s.export(a, -1, "", false)
	s.logf("dev%d: export %d records for anyone", a.idx, res.Records)
	s.pending = append(s.pending, bf)
}

// newTestSim is a scenario of n fresh devices for a test that plays its own
// story; seed draws what the scenario's helpers draw.
func newTestSim(t *testing.T, seed uint64, n int) *scSim {
	t.Helper()
	scLoadFixture(t)
	s := &scSim{t: t, ctx: t.Context(), seed: seed, rng: rand.New(rand.NewPCG(seed, seed)), dir: t.TempDir(), root: scFixture.root.ID,
		applied: map[string]map[int]bool{}, newest: map[[2]int]int{}, created: map[string]string{},
		hardDel: map[string]bool{}, recreated: map[string]bool{}, stats: map[string]int{}}
	for i := range n {
		s.devs = append(s.devs, s.newDevice(i, ""))
	}
	return s
}

// send exports from a what b's manifest says it lacks, and imports it on b
// (nothing when b lacks nothing).
func (s *scSim) send(a, b *scDevice) {
	s.t.Helper()
	if bf, _ := s.export(a, b.idx, s.writeManifest(b), true); bf != nil {
		s.importBundle(bf, b)
	}
}

// deliverPending imports a bundle that waited on the stick, possibly after
// newer ones from the same sender.
func (s *scSim) deliverPending() {
	i := s.rng.IntN(len(s.pending))
	bf := s.pending[i]
	s.deliver(i)
	// A bundle for anyone may travel on; one for a device is done.
	if bf.to >= 0 || s.rng.IntN(3) == 0 {
		s.pending = slices.Delete(s.pending, i, i+1)
	}
}

// deliver imports the i-th waiting bundle at its device, or at a random
// other device when it is for anyone.
func (s *scSim) deliver(i int) {
	bf := s.pending[i]
	to := bf.to
	if to < 0 || s.rng.IntN(8) == 0 {
		// For anyone, or carried to the wrong device: a bundle computed
		// for another device's manifest may still be imported, but must
		// not make its importer claim what it was not sent.
		to = s.rng.IntN(len(s.devs) - 1)
		if to >= bf.from {
			to++
		}
		if bf.to >= 0 && to != bf.to {
			s.stats["misdelivered"]++
		}
	}
	s.importBundle(bf, s.devs[to])
}

// converge runs rings of exchanges with fresh manifests until a whole ring
// moves nothing.
func (s *scSim) converge() {
	n := len(s.devs)
	if s.rng.IntN(6) == 0 {
		s.convergeOnStick()
		return
	}
	for pass := 0; ; pass++ {
		if pass > 3*n {
			s.fail("not quiescent after %d rings", pass)
		}
		moved := int64(0)
		for i := range n {
			a, b := s.devs[i], s.devs[(i+1)%n]
			bf, res := s.export(a, b.idx, s.writeManifest(b), true)
			s.logf("ring %d: dev%d -> dev%d: %d records", pass, a.idx, b.idx, res.Records)
			moved += res.Records
			if bf != nil {
				s.importBundle(bf, b)
			}
		}
		if moved == 0 {
			s.stats["rings"] = pass + 1
			return
		}
	}
}

// convergeOnStick has the devices visit one shared folder in turn, each
// running Exchange, until a whole round imports and exports nothing.
func (s *scSim) convergeOnStick() {
	stick := filepath.Join(s.dir, "stick")
	s.check(os.Mkdir(stick, 0o755), "stick")
	for round := 0; ; round++ {
		if round > 3*len(s.devs) {
			s.fail("not quiescent after %d rounds on the stick", round)
		}
		busy := false
		for _, d := range s.devs {
			res, err := session.Exchange(s.ctx, d.db, stick, session.ExchangeOptions{CertID: d.cert, Name: fmt.Sprintf("dev%d", d.idx)})
			s.check(err, "exchange on device %d", d.idx)
			s.observe(d)
			var did []string
			for _, f := range res.Files {
				switch f.Action {
				case "imported", "exported":
					busy = true
					did = append(did, fmt.Sprintf("%s %s (%d)", f.Action, f.File, f.Records))
				case "failed":
					s.fail("exchange on device %d: %s failed: %s", d.idx, f.File, f.Reason)
				}
				if f.Import != nil && f.Import.Store.Refused > 0 {
					s.fail("exchange on device %d: %s: refused %+v", d.idx, f.File, f.Import.Store.Refusals)
				}
			}
			s.logf("stick round %d: dev%d: %s", round, d.idx, strings.Join(did, ", "))
			if res.Failed > 0 {
				s.fail("exchange on device %d: %d steps failed (retry: %q)", d.idx, res.Failed, res.RetryError)
			}
		}
		if !busy {
			s.stats["stick-rounds"] = round + 1
			return
		}
	}
}

// scDump lists a device's records with their histories, and its app
// rows, in a comparable form.
type scDump struct {
	records map[string]scRecord
	app     map[string][]string // table -> rows
}

type scRecord struct {
	Model, Partition, SourceID, Serialized string
	Deleted, HardDeleted                   bool
	LSI                                    string
	LSC                                    int64
	Conflicting                            string
	SelfRefFK                              string
	History                                string
	Dirty                                  bool
	DeserializationError                   string
}

func (s *scSim) dump(d *scDevice) scDump {
	s.t.Helper()
	out := scDump{records: map[string]scRecord{}, app: map[string][]string{}}
	rows, err := d.app.Query(`SELECT id, model_name, partition, source_id, serialized, deleted, hard_deleted,
		last_saved_instance, last_saved_counter, conflicting_serialized_data, _self_ref_fk, dirty_bit, deserialization_error,
		coalesce((SELECT group_concat(instance_id || ':' || counter, ',') FROM
			(SELECT instance_id, counter FROM morango_recordmaxcounter h WHERE h.store_model_id = s.id ORDER BY instance_id)), '')
		FROM morango_store s ORDER BY id`)
	s.check(err, "dump store")
	for rows.Next() {
		var id string
		var r scRecord
		s.check(rows.Scan(&id, &r.Model, &r.Partition, &r.SourceID, &r.Serialized, &r.Deleted, &r.HardDeleted,
			&r.LSI, &r.LSC, &r.Conflicting, &r.SelfRefFK, &r.Dirty, &r.DeserializationError, &r.History), "scan record")
		out.records[id] = r
	}
	rows.Close()
	for _, tb := range scTables {
		rows, err := d.app.Query(`SELECT ` + scRowJSON(tb.cols) + ` FROM ` + tb.name + ` ORDER BY id`)
		s.check(err, "dump %s", tb.name)
		for rows.Next() {
			var j string
			s.check(rows.Scan(&j), "scan row")
			out.app[tb.name] = append(out.app[tb.name], j)
		}
		rows.Close()
	}
	return out
}

// scRowJSON is the SQL expression of an app row as the JSON object of its
// columns: exact values and types.
func scRowJSON(cols []string) string {
	var args []string
	for _, c := range cols {
		args = append(args, fmt.Sprintf("'%s', %s", c, c))
	}
	return `json_object(` + strings.Join(args, ", ") + `)`
}

// appRow returns d's app row of a record as dump shows it, or "" if the
// app has none.
func (s *scSim) appRow(d *scDevice, model, id string) string {
	s.t.Helper()
	for _, tb := range scTables {
		if tb.name != model {
			continue
		}
		var j string
		err := d.app.QueryRow(`SELECT `+scRowJSON(tb.cols)+` FROM `+tb.name+` WHERE id = ?`, id).Scan(&j)
		if errors.Is(err, sql.ErrNoRows) {
			return ""
		}
		s.check(err, "read %s %s", model, id)
		return j
	}
	s.fail("no table for model %s", model)
	return ""
}

// snapshot is everything about a device's data that an import may change.
func (s *scSim) snapshot(d *scDevice) string {
	dump := s.dump(d)
	var dmc []string
	rows, err := d.app.Query(`SELECT instance_id || '/' || partition || '/' || counter FROM morango_databasemaxcounter ORDER BY 1`)
	s.check(err, "counters")
	for rows.Next() {
		var x string
		s.check(rows.Scan(&x), "scan")
		dmc = append(dmc, x)
	}
	rows.Close()
	return fmt.Sprintf("%v|%v|%v", dump.records, dump.app, dmc)
}

func (s *scSim) assertConverged() {
	ref := s.dump(s.devs[0])
	for _, d := range s.devs {
		dump := ref
		if d.idx > 0 {
			dump = s.dump(d)
		}
		// A note's _self_ref_fk names the parent of its head ("" for a
		// hard deletion, whose data is "{}").
		for _, id := range s.queryIDs(d, `SELECT id FROM morango_store WHERE model_name = 'note'
			AND _self_ref_fk <> coalesce(json_extract(serialized, '$.parent_id'), '')`) {
			s.fail("device %d: note %s: _self_ref_fk is not its head's parent", d.idx, id)
		}
		// Identical records, history and siblings included.
		for id, r := range ref.records {
			o, ok := dump.records[id]
			switch {
			case !ok:
				s.fail("record %s (%s) on device 0 is missing on device %d", id, r.Model, d.idx)
			case !reflect.DeepEqual(o, r):
				s.fail("record %s differs:\n  device 0:  %+v\n  device %d: %+v", id, r, d.idx, o)
			}
		}
		for id, o := range dump.records {
			if _, ok := ref.records[id]; !ok {
				s.fail("record %s (%s) on device %d is missing on device 0", id, o.Model, d.idx)
			}
		}
		// Identical app tables.
		for _, tb := range scTables {
			if !slices.Equal(ref.app[tb.name], dump.app[tb.name]) {
				s.fail("table %s differs between device 0 and device %d:\n  %q\n  %q", tb.name, d.idx, ref.app[tb.name], dump.app[tb.name])
			}
		}
		st, err := d.db.Status(s.ctx)
		s.check(err, "status")
		if len(st.Problems) > 0 {
			s.fail("device %d: problems %+v", d.idx, st.Problems)
		}
		// Nothing left unserialized or waiting.
		var unserialized int
		s.check(d.app.QueryRow(`SELECT count(*) FROM morango_dirty`).Scan(&unserialized), "dirty")
		if unserialized > 0 {
			s.fail("device %d: %d app rows not serialized", d.idx, unserialized)
		}
	}
	// Every record that was ever created exists everywhere, as a live row
	// or a deletion; the app shows exactly the live records, as stored.
	live := map[string]map[string]string{} // table -> id -> row JSON
	for _, tb := range scTables {
		live[tb.name] = map[string]string{}
		for _, j := range ref.app[tb.name] {
			var row map[string]any
			s.check(json.Unmarshal([]byte(j), &row), "row")
			live[tb.name][row["id"].(string)] = j
		}
	}
	for id, model := range s.created {
		if _, ok := ref.records[id]; !ok {
			s.fail("%s %s was held by a device but is lost", model, id)
		}
	}
	for id, r := range ref.records {
		if r.Dirty || r.DeserializationError != "" {
			s.fail("record %s (%s) still waits to be written to the app: %q", id, r.Model, r.DeserializationError)
		}
		if _, ok := s.created[id]; !ok {
			s.fail("record %s (%s) exists but was never seen", id, r.Model)
		}
		row, inApp := live[r.Model][id]
		switch {
		case r.Deleted && inApp:
			s.fail("deleted %s %s is still in the app: %s", r.Model, id, row)
		case !r.Deleted && !inApp:
			s.fail("live %s %s is not in the app", r.Model, id)
		case !r.Deleted && row != r.Serialized:
			s.fail("app row of %s %s differs from its record:\n  app:    %s\n  record: %s", r.Model, id, row, r.Serialized)
		}
		sibs, err := merge.DecodeSiblings(r.Conflicting)
		s.check(err, "siblings of %s", id)
		var conflicts, tombstones int
		for _, v := range sibs {
			if v.HardDeleted {
				tombstones++
			} else {
				conflicts++
			}
		}
		hist := map[string]int64{}
		for _, e := range strings.Split(r.History, ",") {
			inst, c, _ := strings.Cut(e, ":")
			n, err := strconv.ParseInt(c, 10, 64)
			s.check(err, "history of %s", id)
			hist[inst] = n
		}
		st := merge.State{Head: merge.Version{Instance: r.LSI, Counter: r.LSC, Serialized: r.Serialized, Deleted: r.Deleted, HardDeleted: r.HardDeleted},
			Siblings: sibs, History: hist}
		s.check(st.Validate(), "state of %s %s", r.Model, id)
		// A hard-deleted record keeps no data: its head and any concurrent
		// hard deletions are "{}". (Beside a re-created head, hard deletions
		// stay as tombstones.)
		if r.HardDeleted && (r.Serialized != "{}" || conflicts > 0 || !r.Deleted) {
			s.fail("hard-deleted %s %s is not erased: %+v", r.Model, id, r)
		}
		if conflicts > 0 {
			s.stats["records-with-conflicts"]++
		}
		if tombstones > 0 && !r.HardDeleted {
			s.stats["re-created-with-tombstones"]++
		}
		// A welcome note is written again by the app's trigger wherever
		// its person is inserted, the engine's writes included, which the
		// simulation does not see (scWelcomeOn).
		if s.hardDel[id] && !s.recreated[id] && !r.HardDeleted && !(scWelcomeOn() && isWelcomeNote(id)) {
			s.fail("%s %s was hard-deleted and never re-created, but is not erased: %+v", r.Model, id, r)
		}
	}
	// One summary per person and content.
	var dup int
	s.check(s.devs[0].app.QueryRow(`SELECT count(*) FROM (SELECT 1 FROM summary GROUP BY person_id, content_id HAVING count(*) > 1)`).Scan(&dup), "dup")
	if dup > 0 {
		s.fail("%d duplicated summaries", dup)
	}
	// A further round moves nothing: every export for a peer that holds
	// everything selects zero records. The last ring showed it for each
	// device's successor; the slow run checks every other pair too, the
	// quick one a random pair.
	a, b := s.pair()
	for _, to := range s.devs {
		if !scSlow() && to != b {
			continue
		}
		m := s.writeManifest(to)
		for _, from := range s.devs {
			if from == to || (!scSlow() && from != a) {
				continue
			}
			if _, res := s.export(from, to.idx, m, true); res.Records != 0 {
				s.fail("after convergence device %d still sends %d records to device %d", from.idx, res.Records, to.idx)
			}
		}
	}
}

// verify runs store.Verify on every device's file after convergence and
// fails on any problem it reports. Errors break an invariant. Notices fail
// too, as none may appear in a converged state: nothing may wait for the
// engine (unserialized changes, records not written to the app), every
// device holds and claims every version of every other (the last round
// moved nothing, so no peer would send one again), the app never moves a
// row to another partition, and every model is the profile's.
func (s *scSim) verify() {
	s.t.Helper()
	for _, d := range s.devs {
		var problems []string
		res, err := store.Verify(s.ctx, d.path, func(p store.VerifyProblem) error {
			if p.Severity == store.SeverityNotice {
				s.t.Logf("seed %d: device %d: verify notice: %+v", s.seed, d.idx, p)
			}
			problems = append(problems, fmt.Sprintf("%s %s: %s %s (%d): %s", p.Severity, p.Kind, p.Model, p.ID, p.Count, p.Problem))
			return nil
		})
		s.check(err, "verify device %d", d.idx)
		if len(problems) > 0 {
			s.fail("verify device %d: %d errors, %d notices:\n  %s", d.idx, res.Errors, res.Notices, strings.Join(problems, "\n  "))
		}
		// It looked at every record and every app row.
		var records, rows int64
		s.check(d.app.QueryRow(`SELECT (SELECT count(*) FROM morango_store), (SELECT count(*) FROM person) +
			(SELECT count(*) FROM note) + (SELECT count(*) FROM summary)`).Scan(&records, &rows), "count")
		if res.Records != records || res.AppRows != rows || !res.OK() {
			s.fail("verify device %d: %+v, but the file holds %d records and %d app rows", d.idx, res, records, rows)
		}
		s.stats["verified-records"] += int(records)
	}
}

// A bundle written for one device's manifest holds only what that device
// lacked, while its counters claim everything the sender holds. Imported on
// another device, it must not make that device claim versions it never
// received: either the import is refused, or the device still gets them
// later. (Before the import checked the recipient, C claimed A's counters
// and never got the old record.)
func TestMisdeliveredBundle(t *testing.T) {
	s := newTestSim(t, 1, 3)
	a, b, c := s.devs[0], s.devs[1], s.devs[2]
	old := s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'old', 1)`, old, s.root)
	bf, _ := s.export(a, b.idx, s.writeManifest(b), true)
	s.importBundle(bf, b)
	recent := s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'new', 2)`, recent, s.root)
	bf, res := s.export(a, b.idx, s.writeManifest(b), true)
	if res.Records != 1 {
		t.Fatalf("bundle for B holds %d records, want the new one only", res.Records)
	}
	// The bundle for B is carried to C.
	got, err := session.Import(s.ctx, c.db, &session.DiskConnection{Bundle: bf.path}, session.ImportOptions{})
	if err != nil {
		t.Logf("import of a bundle addressed to another device refused: %v", err)
	} else if got.ForOther != b.inst {
		t.Errorf("the import's result does not say the bundle was written for another device: %q", got.ForOther)
	}
	// C must still be able to get the old record from A.
	bf2, res2 := s.export(a, c.idx, s.writeManifest(c), true)
	if bf2 != nil {
		s.importBundle(bf2, c)
	}
	var n int
	if err := c.app.QueryRow(`SELECT count(*) FROM person WHERE id = ?`, old).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("device C imported a bundle written for device B (import error: %v); A's next export for C's manifest sends %d records "+
			"and C never gets the record B already had: C claims A's versions it never received", err, res2.Records)
	}
}

// A record whose foreign-key target the engine itself removes from the app
// in a deserialization (because the target's own parent is deleted) must
// not stay waiting for that target forever: the target's deletion is
// recorded by the next serialization, and the dependent must follow it, on
// every device, without needing yet another import.
func TestCascadeThroughEngineDeletion(t *testing.T) {
	s := newTestSim(t, 2, 3)
	a, b, c := s.devs[0], s.devs[1], s.devs[2]
	x, y, p, ch := s.rid(), s.rid(), s.rid(), s.rid()
	s.exec(a, `INSERT INTO person (id, dataset_id, name, age) VALUES (?, ?, 'x', 1), (?, ?, 'y', 2)`, x, s.root, y, s.root)
	bf, _ := s.export(a, b.idx, s.writeManifest(b), true)
	s.importBundle(bf, b)
	// A writes a note P about X and a reply C about Y; B, concurrently,
	// deletes X.
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, NULL, 'p')`, p, s.root, x)
	s.exec(a, `INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'reply')`, ch, s.root, y, p)
	s.appDelete(b, "person", x)
	// C hears from B, then from A: P arrives with its person deleted, so
	// P is not written; the reply arrives in the same bundle.
	bf, _ = s.export(b, c.idx, s.writeManifest(c), true)
	s.importBundle(bf, c)
	bf, _ = s.export(a, c.idx, s.writeManifest(c), true)
	s.importBundle(bf, c)
	// The reply goes with its parent in the same deserialization: it does
	// not wait for a parent the engine itself removed.
	if ids := s.queryIDs(c, `SELECT id FROM morango_store WHERE dirty_bit OR deserialization_error <> ''`); len(ids) != 0 {
		t.Errorf("records left waiting on C: %q", ids)
	}
	if ids := s.queryIDs(c, `SELECT id FROM note WHERE id IN (?, ?)`, p, ch); len(ids) != 0 {
		t.Errorf("notes still in C's app: %q", ids)
	}
	s.converge()
	s.assertConverged()
}

// waitingEdits edits or deletes, in d's app, some rows whose store record
// waits to reach the app (dirty, not deleted): the app still shows the
// version before the incoming one.
func (s *scSim) waitingEdits(d *scDevice) {
	rows, err := d.app.Query(`SELECT id, model_name FROM morango_store WHERE dirty_bit ORDER BY ` + scStoreOrder)
	s.check(err, "waiting records")
	type rec struct{ id, model string }
	var recs []rec
	for rows.Next() {
		var r rec
		s.check(rows.Scan(&r.id, &r.model), "scan")
		recs = append(recs, r)
	}
	rows.Close()
	for _, r := range recs {
		ti := -1
		for i, tb := range scTables {
			if tb.name == r.model {
				ti = i
			}
		}
		var n int
		if ti >= 0 {
			s.check(d.app.QueryRow(`SELECT count(*) FROM `+r.model+` WHERE id = ?`, r.id).Scan(&n), "count")
		}
		if n == 0 {
			continue
		}
		k := 4
		if scUndoOn() {
			k = 6
		}
		switch s.rng.IntN(k) {
		case 4, 5:
			s.editUndo(d, ti, r.id)
		case 0, 1:
			s.stats["waiting-edit"]++
			s.update(d, ti, r.id)
		case 2:
			s.stats["waiting-delete"]++
			s.appDelete(d, r.model, r.id)
		}
	}
}
