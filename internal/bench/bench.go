// Package bench measures morango against what SQLite itself can do on the
// same machine. Run generates a school (the sample app) on device A with
// plain SQL, then measures, in one run: the floor (landing the same app rows
// in an empty copy of the app's tables), serialization, a full export to a
// bundle, its import and deserialization on device B, an export for B once
// B holds everything, and an export and import after 1% of the records
// changed. Every stage reports its time, its rate, its ratio to the floor
// and its peak memory; the report also compares the bundle's size with
// zstd of the records' serialized JSON alone, and checks the targets.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/morango-sync/morango/session"
	"github.com/morango-sync/morango/store"
)

// Options configure a benchmark.
type Options struct {
	// Records is the number of app rows to generate on device A.
	Records int
	// Runs repeats the whole measurement on fresh devices; the report
	// gives the median of each figure (memory: the largest). Zero means 1.
	Runs int
	// Dir is where the devices are made; "" means a temporary folder,
	// removed afterwards.
	Dir string
	// Keep keeps the devices' files.
	Keep bool
	// Seed makes the data deterministic.
	Seed uint64
	// ProfileDir, if set, receives a CPU profile of each stage of the
	// first run: <records>-<stage>.pprof.
	ProfileDir string
	// Statements, if set, has each stage of the first run report the
	// store's statements and steps that took it longest.
	Statements bool
	// PageSize, if not zero, is the page size in bytes of the databases
	// the sample app creates (device A's, B's and the floor's); zero
	// keeps SQLite's default (4096).
	PageSize int
	// Log, if set, receives a line as each stage starts.
	Log func(format string, args ...any)
}

// Stage names, in the order they run.
const (
	StageGenerate      = "generate"
	StageFloor         = "floor"
	StageSerialize     = "serialize"
	StageExport        = "export"
	StageImport        = "import"
	StageManifest      = "manifest"
	StageExportNothing = "export-nothing"
	StageChange        = "change-1pct"
	StageExport1       = "export-1pct"
	StageImport1       = "import-1pct"
)

var stageDescriptions = map[string]string{
	StageGenerate:      "app writes the school on A (plain SQL, not sync work)",
	StageFloor:         "floor: copy the app rows into empty tables (1 tx, prepared)",
	StageSerialize:     "serialize on A",
	StageExport:        "export A → bundle (queue, encode, sign, read back)",
	StageImport:        "import on B (verify, merge, deserialize)",
	StageManifest:      "manifest of B",
	StageExportNothing: "export A → B when B has everything",
	StageChange:        "app changes 1% of the rows on A (plain SQL)",
	StageExport1:       "export A → B after 1% changed (incl. serialize)",
	StageImport1:       "import on B after 1% changed",
}

// Stage is what one stage measured.
type Stage struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Records     int64   `json:"records"`
	Seconds     float64 `json:"seconds"`
	// RecordsPerSecond is Records / Seconds; 0 when no record moved.
	RecordsPerSecond float64 `json:"records_per_second"`
	// FloorRatio is Seconds divided by the floor's seconds of the same
	// run (the median of the runs' ratios).
	FloorRatio float64 `json:"floor_ratio"`
	// CPUSeconds is the CPU time (user and system, all threads) the
	// process used during the stage, and CPUFloorRatio its ratio to the
	// floor's: on a machine shared with other work they vary less than
	// wall-clock seconds.
	CPUSeconds    float64 `json:"cpu_seconds"`
	CPUFloorRatio float64 `json:"cpu_floor_ratio"`
	// HeapPeakBytes is the peak of the Go heap in use during the stage.
	HeapPeakBytes uint64 `json:"heap_peak_bytes"`
	// RSSPeakBytes is the peak resident set of the process during the
	// stage, SQLite's caches included.
	RSSPeakBytes uint64 `json:"rss_peak_bytes"`
	// PrivatePeakBytes is the peak of the resident set less the pages of
	// mapped files (the binary, a database read through a memory map):
	// sampled every 10 ms.
	PrivatePeakBytes uint64 `json:"private_peak_bytes"`
	// Parts splits the stage by transfer stage (export and import).
	Parts []Part `json:"parts,omitempty"`
	// Statements are the store's statements and steps that took the
	// stage longest (Options.Statements), of the first run.
	Statements []store.StatementTime `json:"statements,omitempty"`
	// Runs holds each run's seconds when there were several.
	Runs []float64 `json:"runs_seconds,omitempty"`
}

// Part is the time spent in one transfer stage.
type Part struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// BundleSize compares the full bundle with zstd of the serialized JSON of
// its records alone.
type BundleSize struct {
	Bytes          int64   `json:"bytes"`
	Records        int64   `json:"records"`
	BytesPerRecord float64 `json:"bytes_per_record"`
	// JSONBytes is the size of the records' serialized JSON, one per line.
	JSONBytes int64 `json:"json_bytes"`
	// ZstdJSONBytes is JSONBytes compressed by zstd at its default level
	// (3); ZstdFastestJSONBytes at the level the bundle writer uses.
	ZstdJSONBytes        int64 `json:"zstd_json_bytes"`
	ZstdFastestJSONBytes int64 `json:"zstd_fastest_json_bytes"`
	// Ratio is Bytes / min(ZstdJSONBytes, ZstdFastestJSONBytes).
	Ratio float64 `json:"ratio"`
}

// Target is one goal of the benchmark and whether this run met it.
type Target struct {
	Name     string  `json:"name"`
	Measured float64 `json:"measured"`
	Limit    float64 `json:"limit"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
	// Scale says at which size the goal is set; smaller runs report it
	// for information.
	Scale int `json:"scale_records"`
}

// Env describes the machine and the build.
type Env struct {
	GoVersion     string `json:"go"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
	CPUs          int    `json:"cpus"`
	GOMAXPROCS    int    `json:"gomaxprocs"`
	SQLiteVersion string `json:"sqlite"`
	Driver        string `json:"driver"`
	// PageSize is the page size of the app's databases, in bytes.
	PageSize int `json:"page_size"`
}

// Report is the outcome of Run.
type Report struct {
	Records int64   `json:"records"`
	Rows    int64   `json:"app_rows"`
	Changed int64   `json:"changed_rows"`
	Runs    int     `json:"runs"`
	Env     Env     `json:"env"`
	Stages  []Stage `json:"stages"`
	// EndToEndSeconds is serialize + export + import (median of runs).
	EndToEndSeconds float64    `json:"end_to_end_seconds"`
	EndToEndRatio   float64    `json:"end_to_end_floor_ratio"`
	Bundle          BundleSize `json:"bundle"`
	// PeakRSSBytes and PeakHeapBytes are the largest of the stages'.
	PeakRSSBytes     uint64   `json:"peak_rss_bytes"`
	PeakPrivateBytes uint64   `json:"peak_private_bytes"`
	PeakHeapBytes    uint64   `json:"peak_heap_bytes"`
	Targets          []Target `json:"targets"`
}

// Stage returns the stage named name, or nil.
func (r *Report) Stage(name string) *Stage {
	for i := range r.Stages {
		if r.Stages[i].Name == name {
			return &r.Stages[i]
		}
	}
	return nil
}

// Run runs the benchmark.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Records < 20 {
		return nil, fmt.Errorf("records %d: at least 20", opts.Records)
	}
	if p := opts.PageSize; p != 0 && (p < 512 || p > 65536 || p&(p-1) != 0) {
		return nil, fmt.Errorf("page size %d: a power of two from 512 to 65536", p)
	}
	if opts.Runs <= 0 {
		opts.Runs = 1
	}
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	base := opts.Dir
	if base == "" {
		tmp, err := os.MkdirTemp("", "morango-bench-")
		if err != nil {
			return nil, err
		}
		base = tmp
		if !opts.Keep {
			defer os.RemoveAll(tmp)
		}
	} else if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	if opts.ProfileDir != "" {
		if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}
	var runs []*runResult
	for i := 0; i < opts.Runs; i++ {
		dir := filepath.Join(base, fmt.Sprintf("run%d", i+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		opts.Log("run %d of %d in %s", i+1, opts.Runs, dir)
		r := &runResult{opts: opts, dir: dir, profile: i == 0 && opts.ProfileDir != "", statements: i == 0 && opts.Statements}
		err := r.run(ctx)
		if !opts.Keep && opts.Dir == "" {
			os.RemoveAll(dir)
		}
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return summarize(runs), nil
}

// runResult is one run's measurements.
type runResult struct {
	opts       Options
	dir        string
	profile    bool
	statements bool // profile the store's statements

	stages  map[string]*Stage
	order   []string
	bundle  BundleSize
	rows    int64
	records int64
	changed int64
	env     Env
}

// topStatements is the number of statements a stage reports.
const topStatements = 12

// measure runs fn as the stage name, timing it and watching memory.
func (r *runResult) measure(name string, fn func(st *Stage) error) error {
	r.opts.Log("%s: %s", name, stageDescriptions[name])
	st := &Stage{Name: name, Description: stageDescriptions[name]}
	var prof *os.File
	if r.profile {
		f, err := os.Create(filepath.Join(r.opts.ProfileDir, fmt.Sprintf("%d-%s.pprof", r.opts.Records, name)))
		if err != nil {
			return err
		}
		prof = f
	}
	mem := startMem()
	statements := r.statements
	if statements {
		store.TakeStatementProfile()
		store.ProfileStatements(true)
	}
	if prof != nil {
		if err := pprof.StartCPUProfile(prof); err != nil {
			prof.Close()
			return err
		}
	}
	start, cpu := time.Now(), cpuTime()
	err := fn(st)
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	if statements {
		store.ProfileStatements(false)
		st.Statements = store.TakeStatementProfile()
		st.Statements = st.Statements[:min(len(st.Statements), topStatements)]
	}
	st.HeapPeakBytes, st.RSSPeakBytes, st.PrivatePeakBytes = mem.end()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	st.Seconds, st.CPUSeconds = elapsed.Seconds(), cpu.Seconds()
	if st.Records > 0 && st.Seconds > 0 {
		st.RecordsPerSecond = float64(st.Records) / st.Seconds
	}
	if r.stages == nil {
		r.stages = map[string]*Stage{}
	}
	r.stages[name] = st
	r.order = append(r.order, name)
	return nil
}

// stageTimer turns transfer events into the time spent in each stage.
type stageTimer struct {
	started map[session.Stage]time.Time
	spent   map[session.Stage]time.Duration
}

func newStageTimer() *stageTimer {
	return &stageTimer{started: map[session.Stage]time.Time{}, spent: map[session.Stage]time.Duration{}}
}

func (t *stageTimer) observe(e session.Event) {
	switch e.Kind {
	case session.EventStarted:
		t.started[e.Stage] = e.At
	case session.EventCompleted:
		t.spent[e.Stage] += e.At.Sub(t.started[e.Stage])
	}
}

// parts returns the time of the named transfer stages, and the rest of
// total as "bookkeeping" (the stage records, certificates, opening files).
func (t *stageTimer) parts(total time.Duration, names map[session.Stage]string, order ...session.Stage) []Part {
	var ps []Part
	rest := total
	for _, s := range order {
		d := t.spent[s]
		rest -= d
		ps = append(ps, Part{Name: names[s], Seconds: d.Seconds()})
	}
	return append(ps, Part{Name: "bookkeeping", Seconds: max(rest, 0).Seconds()})
}

var exportParts = map[session.Stage]string{
	session.Serializing:  "serialize",
	session.Queuing:      "queue",
	session.Transferring: "write bundle + read back",
}

var importParts = map[session.Stage]string{
	session.Serializing:   "serialize local changes",
	session.Transferring:  "verify (pass 1)",
	session.Dequeuing:     "merge (pass 2)",
	session.Deserializing: "deserialize + commit",
}

func (r *runResult) run(ctx context.Context) error {
	var a, b *device
	defer func() {
		if a != nil {
			a.close()
		}
		if b != nil {
			b.close()
		}
	}()
	err := r.measure(StageGenerate, func(st *Stage) error {
		var err error
		a, b, _, _, err = setup(ctx, r.dir, r.opts.Records, r.opts.Seed, r.opts.PageSize)
		if err != nil {
			return err
		}
		_, st.Records, err = countRows(ctx, a.app, appTables(a.db.Profile()))
		return err
	})
	if err != nil {
		return err
	}
	r.rows = r.stages[StageGenerate].Records
	if r.env, err = environment(ctx, a.app); err != nil {
		return err
	}
	tables := appTables(a.db.Profile())

	err = r.measure(StageFloor, func(st *Stage) error {
		n, err := floor(ctx, a.app, filepath.Join(r.dir, "floor.sqlite3"), tables, r.opts.PageSize)
		st.Records = n
		return err
	})
	if err != nil {
		return err
	}

	err = r.measure(StageSerialize, func(st *Stage) error {
		res, err := a.db.Serialize(ctx)
		if err != nil {
			return err
		}
		if res.Failed > 0 {
			return fmt.Errorf("%d rows could not be serialized", res.Failed)
		}
		st.Records = res.Versions()
		return nil
	})
	if err != nil {
		return err
	}
	r.records = r.stages[StageSerialize].Records

	full := filepath.Join(r.dir, "full.bundle")
	if err := r.export(ctx, StageExport, a, &session.DiskConnection{Bundle: full}); err != nil {
		return err
	}
	if err := r.importBundle(ctx, StageImport, b, full); err != nil {
		return err
	}
	if err := converged(ctx, a, b, tables); err != nil {
		return err
	}
	if r.bundle, err = bundleSize(full, a); err != nil {
		return err
	}

	manifest := filepath.Join(r.dir, "b.manifest")
	err = r.measure(StageManifest, func(st *Stage) error {
		_, err := session.WriteManifest(ctx, b.db, nil, manifest, session.ManifestOptions{CertID: b.cert, Name: "b"})
		return err
	})
	if err != nil {
		return err
	}
	nothing := filepath.Join(r.dir, "nothing.bundle")
	if err := r.export(ctx, StageExportNothing, a, &session.DiskConnection{Bundle: nothing, Manifest: manifest}); err != nil {
		return err
	}
	if n := r.stages[StageExportNothing].Records; n != 0 {
		return fmt.Errorf("export for a peer that has everything sent %d records", n)
	}

	err = r.measure(StageChange, func(st *Stage) error {
		n, err := changeOnePercent(ctx, a.app)
		st.Records = n
		return err
	})
	if err != nil {
		return err
	}
	r.changed = r.stages[StageChange].Records
	delta := filepath.Join(r.dir, "delta.bundle")
	if err := r.export(ctx, StageExport1, a, &session.DiskConnection{Bundle: delta, Manifest: manifest}); err != nil {
		return err
	}
	if err := r.importBundle(ctx, StageImport1, b, delta); err != nil {
		return err
	}
	return converged(ctx, a, b, tables)
}

func (r *runResult) export(ctx context.Context, name string, a *device, conn *session.DiskConnection) error {
	return r.measure(name, func(st *Stage) error {
		timer := newStageTimer()
		start := time.Now()
		res, err := session.Export(ctx, a.db, conn, session.ExportOptions{CertID: a.cert, Observer: timer.observe})
		if err != nil {
			return err
		}
		st.Records = res.Records
		st.Parts = timer.parts(time.Since(start), exportParts, session.Serializing, session.Queuing, session.Transferring)
		return nil
	})
}

func (r *runResult) importBundle(ctx context.Context, name string, b *device, path string) error {
	return r.measure(name, func(st *Stage) error {
		timer := newStageTimer()
		start := time.Now()
		res, err := session.Import(ctx, b.db, &session.DiskConnection{Bundle: path}, session.ImportOptions{Observer: timer.observe})
		if err != nil {
			return err
		}
		if res.Store.Refused > 0 {
			return fmt.Errorf("%d records refused: %v", res.Store.Refused, res.Store.Refusals[0])
		}
		if res.Store.Deserialize.Pending > 0 {
			return fmt.Errorf("%d records not deserialized", res.Store.Deserialize.Pending)
		}
		st.Records = res.Store.Received
		st.Parts = timer.parts(time.Since(start), importParts,
			session.Serializing, session.Transferring, session.Dequeuing, session.Deserializing)
		return nil
	})
}

// changes are what the app changes in 1% of the rows of each table.
var changes = []struct{ table, set string }{
	{"facilityuser", `full_name = full_name || ' (edited)', modified = ?1`},
	{"classroom", `name = name || ' (edited)', modified = ?1`},
	{"lesson", `title = title || ' (edited)', modified = ?1`},
	{"lessonassignment", `assigned_at = ?1`},
	{"contentsummarylog", `progress = min(1.0, progress + 0.01), time_spent = time_spent + 30, modified = ?1`},
	{"contentsessionlog", `end_time = ?1, progress = min(1.0, progress + 0.01)`},
	{"anonymoussessionlog", `end_time = ?1`},
	{"coachnote", `body = body || ' Improving.', modified = ?1`},
}

// changeOnePercent changes one row in a hundred of each table, as the app
// would, in one transaction; it returns the number of rows changed.
func changeOnePercent(ctx context.Context, app *sql.DB) (int64, error) {
	tx, err := app.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	ts := time.Date(2026, 11, 9, 9, 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05.000Z")
	var n int64
	for _, c := range changes {
		res, err := tx.ExecContext(ctx, `UPDATE "`+c.table+`" SET `+c.set+` WHERE rowid % 100 = 0`, ts)
		if err != nil {
			return 0, fmt.Errorf("change %s: %w", c.table, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, tx.Commit()
}

// environment describes the machine and the SQLite build.
func environment(ctx context.Context, db *sql.DB) (Env, error) {
	e := Env{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if err := db.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&e.SQLiteVersion); err != nil {
		return e, err
	}
	if err := db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&e.PageSize); err != nil {
		return e, err
	}
	e.Driver = "modernc.org/sqlite"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "modernc.org/sqlite" {
				e.Driver += " " + d.Version
			}
		}
	}
	return e, nil
}

// summarize turns the runs into a report: medians of times and ratios,
// largest memory peaks.
func summarize(runs []*runResult) *Report {
	first := runs[0]
	rep := &Report{Records: first.records, Rows: first.rows, Changed: first.changed, Runs: len(runs), Env: first.env, Bundle: first.bundle}
	var e2e, e2eRatio []float64
	for _, r := range runs {
		s := r.stages[StageSerialize].Seconds + r.stages[StageExport].Seconds + r.stages[StageImport].Seconds
		e2e = append(e2e, s)
		e2eRatio = append(e2eRatio, s/r.stages[StageFloor].Seconds)
	}
	rep.EndToEndSeconds, rep.EndToEndRatio = median(e2e), median(e2eRatio)
	for _, name := range first.order {
		var secs, ratios, rates, cpus, cpuRatios []float64
		st := *first.stages[name]
		partSecs := make([][]float64, len(st.Parts))
		for _, r := range runs {
			s := r.stages[name]
			secs = append(secs, s.Seconds)
			ratios = append(ratios, s.Seconds/r.stages[StageFloor].Seconds)
			rates = append(rates, s.RecordsPerSecond)
			cpus = append(cpus, s.CPUSeconds)
			if f := r.stages[StageFloor].CPUSeconds; f > 0 {
				cpuRatios = append(cpuRatios, s.CPUSeconds/f)
			}
			st.HeapPeakBytes = max(st.HeapPeakBytes, s.HeapPeakBytes)
			st.RSSPeakBytes = max(st.RSSPeakBytes, s.RSSPeakBytes)
			st.PrivatePeakBytes = max(st.PrivatePeakBytes, s.PrivatePeakBytes)
			for i := range st.Parts {
				if i < len(s.Parts) {
					partSecs[i] = append(partSecs[i], s.Parts[i].Seconds)
				}
			}
		}
		st.Seconds, st.FloorRatio, st.RecordsPerSecond = median(secs), median(ratios), median(rates)
		st.CPUSeconds, st.CPUFloorRatio = median(cpus), median(cpuRatios)
		st.Parts = slices.Clone(st.Parts)
		for i := range st.Parts {
			st.Parts[i].Seconds = median(partSecs[i])
		}
		if len(runs) > 1 {
			st.Runs = secs
		}
		if name != StageGenerate {
			rep.PeakRSSBytes = max(rep.PeakRSSBytes, st.RSSPeakBytes)
			rep.PeakPrivateBytes = max(rep.PeakPrivateBytes, st.PrivatePeakBytes)
			rep.PeakHeapBytes = max(rep.PeakHeapBytes, st.HeapPeakBytes)
		}
		rep.Stages = append(rep.Stages, st)
	}
	rep.Targets = targets(rep)
	return rep
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

const mib = 1 << 20

// targets checks the goals of the benchmark; they are set for a million
// records.
func targets(r *Report) []Target {
	const scale = 1_000_000
	st := func(name string) *Stage { return r.Stage(name) }
	mb := func(b uint64) float64 { return float64(b) / mib }
	ts := []Target{
		{Name: "export within 1.5× the floor", Measured: st(StageExport).FloorRatio, Limit: 1.5, Unit: "× floor", Scale: scale},
		{Name: "import + deserialize within 3× the floor", Measured: st(StageImport).FloorRatio, Limit: 3, Unit: "× floor", Scale: scale},
		{Name: "end to end (serialize + export + import) well under a minute", Measured: r.EndToEndSeconds, Limit: 60, Unit: "s", Scale: scale},
		{Name: "export for a peer that has everything under 50 ms", Measured: st(StageExportNothing).Seconds * 1000, Limit: 50, Unit: "ms", Scale: scale},
		{Name: "export peak RSS under 128 MiB", Measured: mb(st(StageExport).RSSPeakBytes), Limit: 128, Unit: "MiB", Scale: scale},
		{Name: "import peak RSS under 128 MiB", Measured: mb(st(StageImport).RSSPeakBytes), Limit: 128, Unit: "MiB", Scale: scale},
		{Name: "bundle no larger than 1.2× zstd of the serialized JSON", Measured: r.Bundle.Ratio, Limit: 1.2, Unit: "×", Scale: scale},
	}
	for i := range ts {
		ts[i].Met = ts[i].Measured <= ts[i].Limit
	}
	return ts
}
