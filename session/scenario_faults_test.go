package session_test

// The convergence scenario with faults injected into its exchanges: sticks
// that fail while a bundle is written or read back, bundles truncated or
// with flipped bytes, sticks pulled out while an import reads, imports
// cancelled part-way. Every fault must surface as an error, leave the
// database as it was but for the record of the transfer session, and the
// devices must still converge once transfers are tried again or later ones
// carry the same records.
//
// Run one seed:         MORANGO_SEED_BASE=17 MORANGO_SEEDS=1 go test ./session/ -run 'TestScenarioFaults/seed=17$' -v
// Run many (thousands): MORANGO_SLOW_TESTS=1 go test ./session/ -run TestScenarioFaults

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/session"
)

func TestScenarioFaults(t *testing.T) {
	scLoadFixture(t)
	tmpl := scTemplates(t)
	totals := &scCounts{m: map[string]int{}}
	n := scSeeds(t, 24, 2000, 4, func(t *testing.T, seed uint64) { scRun(t, seed, tmpl, totals, true) })
	t.Logf("totals: %v", totals.m)
	if t.Failed() || n < 20 {
		return
	}
	// Enough seeds draw every kind of fault.
	for _, kind := range append(slices.Clone(scExportFaults), scImportFaults...) {
		if totals.m["fault-"+kind] == 0 {
			t.Errorf("%d seeds injected no %s fault", n, kind)
		}
	}
}

// The faults of an export: the stick fails as the temporary file is
// created, written (part of the bundle is on the stick), flushed, closed or
// renamed, as its folder is flushed, or as the bundle is read back.
var scExportFaults = []string{"create", "write", "sync", "close", "rename", "syncdir", "read-back"}

// The faults of an import: the bundle on the stick is truncated or has
// flipped bytes, the stick is pulled out during one of the import's
// readings of the file, the import is cancelled during one of them, or at
// one of its stage events.
var scImportFaults = []string{"truncated", "flipped", "pulled", "cancel-read", "cancel-event"}

// scOutcome is what a failed import leaves for importBundle to do.
type scOutcome int

const (
	scRetry   scOutcome = iota // import the bundle now
	scResume                   // import it now: it resumes the cancelled transfer session
	scGaveUp                   // the bundle is lost; later exchanges carry its records
	scApplied                  // the bundle is applied (the fault came after the commit, or never)
)

// failExport runs an export from a as export would, to a stick that fails
// as the seed draws. It must fail with the stick's error, leave the
// database as it was but for the record of the transfer session, and
// leave nothing on the stick.
func (s *scSim) failExport(a *scDevice, manifest string, skipEmpty bool) {
	s.t.Helper()
	// The export serializes the app's changes first; that is not the
	// fault's doing.
	_, err := a.db.Serialize(s.ctx)
	s.check(err, "serialize on device %d", a.idx)
	s.observe(a)
	stick := filepath.Join(s.dir, fmt.Sprintf("failing%d", s.bundles))
	s.check(os.Mkdir(stick, 0o755), "stick")
	path := filepath.Join(stick, "b.bundle")
	kind := scExportFaults[s.rng.IntN(len(scExportFaults))]
	fs := &scStick{fault: kind, path: path}
	var want error = syscall.EIO
	switch kind {
	case "create":
		want = syscall.EROFS
	case "write":
		// A bundle is at least about 3 KB: its header holds a chain.
		fs.at, want = s.rng.Int64N(3<<10), syscall.ENOSPC
	case "read-back":
		// The export reads the temporary file twice before it takes the
		// bundle's name: for its header and digest, and its records.
		fs.fault, fs.temp, fs.open, fs.at = "read", true, 1+s.rng.IntN(2), s.rng.Int64N(3<<10)
	}
	s.logf("dev%d: export to a stick that fails (%s)", a.idx, fs)
	before := s.state(a)
	_, err = session.Export(s.ctx, a.db, &session.DiskConnection{FS: fs, Bundle: path, Manifest: manifest},
		session.ExportOptions{CertID: a.cert, SkipEmpty: skipEmpty})
	switch {
	case !fs.happened():
		// Nothing was written (nothing to send), or the bundle was shorter
		// than where the stick was to fail: the export went through.
		s.check(err, "export from device %d to a stick that did not fail (%s)", a.idx, fs)
		s.stats["fault-missed-"+kind]++
	case err == nil:
		s.fail("export from device %d: the stick failed (%s), the export succeeded", a.idx, fs)
	case !errors.Is(err, want):
		s.fail("export from device %d: the stick failed (%s) with %v, the export with %v", a.idx, fs, want, err)
	case !strings.Contains(err.Error(), stick):
		s.fail("export from device %d: the stick failed (%s), error %q does not name it", a.idx, fs, err)
	default:
		s.stats["fault-"+kind]++
	}
	if diff := scDiff(before, s.state(a)); diff != "" {
		s.fail("export from device %d to a failing stick (%s) changed the database:\n%s", a.idx, fs, diff)
	}
	names, err := bundle.OSFS{}.ReadDir(stick)
	s.check(err, "read the stick")
	if fs.happened() && len(names) > 0 {
		s.fail("export from device %d: the stick failed (%s) and holds %v", a.idx, fs, names)
	}
	s.check(os.RemoveAll(stick), "clear the stick")
}

// failImport imports bf on d with a fault drawn from the seed. The import
// must fail (with the fault's error, where it has one) and leave the
// database as it was but for the record of the transfer session; only a
// cancellation that comes once the import has committed may leave the
// bundle applied, and then in whole. It returns what importBundle is to do
// next: import the bundle (resuming a cancelled transfer session), or
// nothing, because the bundle is given up or applied.
func (s *scSim) failImport(bf *scBundle, d *scDevice) scOutcome {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	kind := scImportFaults[s.rng.IntN(len(scImportFaults))]
	conn := &session.DiskConnection{Bundle: bf.path}
	var opts session.ImportOptions
	var want error
	happened := func() bool { return true }
	data, err := os.ReadFile(bf.path)
	s.check(err, "read %s", bf.path)
	what := kind
	switch kind {
	case "truncated", "flipped":
		// A copy damaged on the stick: any change fails verification.
		damaged := slices.Clone(data)
		if kind == "truncated" {
			damaged = damaged[:s.rng.IntN(len(damaged))]
			what = fmt.Sprintf("truncated to %d of %d bytes", len(damaged), len(data))
		} else {
			var at []int
			for range 1 + s.rng.IntN(3) {
				i := s.rng.IntN(len(damaged))
				damaged[i] ^= byte(1 + s.rng.IntN(255))
				at = append(at, i)
			}
			what = fmt.Sprintf("bytes flipped at %v of %d", at, len(data))
		}
		conn.Bundle = bf.path + ".damaged"
		s.check(os.WriteFile(conn.Bundle, damaged, 0o600), "write the damaged copy")
		defer os.Remove(conn.Bundle)
	case "pulled", "cancel-read":
		// The import reads the file four times: for its digest, its
		// header, to verify it, to apply it. A header is longer than 256
		// bytes.
		fs := &scStick{fault: "read", path: bf.path, open: 1 + s.rng.IntN(4), at: s.rng.Int64N(int64(len(data)))}
		want = syscall.EIO
		if fs.open == 2 {
			fs.at = s.rng.Int64N(256)
		}
		if kind == "cancel-read" {
			fs.fault, fs.cancel, want = "cancel", cancel, context.Canceled
		}
		conn.FS, what, happened = fs, fs.String(), fs.happened
	case "cancel-event":
		// An import emits a started and a completed event for each of its
		// seven stages, and progress events between.
		n, k := 0, 1+s.rng.IntN(18)
		var at session.Event
		opts.Observer = func(e session.Event) {
			if n++; n == k {
				at = e
				cancel()
			}
		}
		// Cancelled at its last event, the import has nothing left to do.
		happened = func() bool { return n >= k && (at.Stage != session.Cleanup || at.Kind != session.EventCompleted) }
		what = fmt.Sprintf("cancelled at event %d", k)
		want = context.Canceled
	}
	s.logf("dev%d: import %s with a fault (%s)", d.idx, filepath.Base(bf.path), what)
	digest := sha256.Sum256(data)
	before := s.state(d)
	res, err := session.Import(ctx, d.db, conn, opts)
	after := s.state(d)
	applied, aerr := d.db.AppliedBundle(s.ctx, bf.transf)
	s.check(aerr, "applied bundles of device %d", d.idx)
	switch {
	case !happened():
		// The header was read whole before the stick was pulled, or the
		// import emitted fewer events: it went through.
		s.check(err, "device %d: import %s with a fault that did not happen (%s)", d.idx, bf.path, what)
		s.observe(d)
		s.imported(bf, d, res)
		s.stats["fault-missed-"+kind]++
		return scApplied
	case err == nil:
		s.fail("device %d: import %s (%s) succeeded", d.idx, bf.path, what)
	case want != nil && !errors.Is(err, want):
		s.fail("device %d: import %s (%s): error %v, want %v", d.idx, bf.path, what, err, want)
	case session.IsAlreadyApplied(err):
		s.fail("device %d: import %s (%s): %v, but it was never applied", d.idx, bf.path, what, err)
	}
	s.stats["fault-"+kind]++
	cancelled := errors.Is(want, context.Canceled)
	if diff := scDiff(before, after); diff != "" {
		if !cancelled || !applied {
			s.fail("device %d: import %s (%s) failed with %v and changed the database:\n%s", d.idx, bf.path, what, err, diff)
		}
		// Cancelled after its commit: the bundle is applied, and
		// importing it again finishes its transfer session.
		s.logf("   applied before the cancellation")
		s.stats["fault-cancel-after-commit"]++
		s.observe(d)
		s.applied[bf.path][d.idx] = true
		s.importBundle(bf, d)
		t, err := d.db.ActiveTransfer(s.ctx, hex.EncodeToString(digest[:]))
		s.check(err, "active transfer")
		if t != nil {
			s.fail("device %d: importing %s again left its transfer session %s active", d.idx, bf.path, t.ID)
		}
		return scApplied
	}
	if applied {
		s.fail("device %d: import %s (%s) failed with %v, changed nothing and recorded the bundle as applied", d.idx, bf.path, what, err)
	}
	next := scRetry
	if cancelled {
		// An interrupted transfer stays active, and the next import of
		// the file resumes it.
		t, err := d.db.ActiveTransfer(s.ctx, hex.EncodeToString(digest[:]))
		s.check(err, "active transfer")
		if t != nil {
			next = scResume
		}
	}
	if s.final || s.rng.IntN(2) == 0 {
		return next
	}
	s.logf("   gave up %s", filepath.Base(bf.path))
	s.stats["fault-gave-up"]++
	return scGaveUp
}

// state is a device's whole database but for the record of transfer
// sessions: every row of every table, in a comparable form.
func (s *scSim) state(d *scDevice) map[string][]string {
	s.t.Helper()
	out := map[string][]string{}
	for _, table := range s.queryIDs(d, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
		AND name NOT IN ('morango_transfersession', 'morango_syncsession') ORDER BY name`) {
		rows, err := d.app.Query(`SELECT * FROM "` + table + `"`)
		s.check(err, "read %s", table)
		cols, err := rows.Columns()
		s.check(err, "columns of %s", table)
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		l := []string{}
		for rows.Next() {
			s.check(rows.Scan(ptrs...), "scan %s", table)
			var b strings.Builder
			for i, v := range vals {
				fmt.Fprintf(&b, "%s=%q ", cols[i], v)
			}
			l = append(l, b.String())
		}
		s.check(rows.Err(), "read %s", table)
		rows.Close()
		slices.Sort(l)
		out[table] = l
	}
	return out
}

// scDiff describes how two states differ, or returns "".
func scDiff(a, b map[string][]string) string {
	if maps.EqualFunc(a, b, slices.Equal) {
		return ""
	}
	var d []string
	for table := range a {
		if _, ok := b[table]; !ok {
			d = append(d, "table "+table+" is gone")
		}
	}
	for table, rows := range b {
		old, ok := a[table]
		if !ok {
			d = append(d, "new table "+table)
			continue
		}
		for _, r := range rows {
			if !slices.Contains(old, r) {
				d = append(d, fmt.Sprintf("%s: + %s", table, r))
			}
		}
		for _, r := range old {
			if !slices.Contains(rows, r) {
				d = append(d, fmt.Sprintf("%s: - %s", table, r))
			}
		}
	}
	slices.Sort(d)
	return strings.Join(d, "\n")
}

// scStick is the OS's filesystem as a USB stick that fails once: as a
// temporary file is created, written (after at bytes), synced or closed,
// as it is renamed, as its folder is synced, or as the open-th opening of
// the bundle at path (counting from 1) is read, after at bytes. With fault
// "cancel", the read goes on but the transfer's context is cancelled.
type scStick struct {
	bundle.OSFS
	fault  string // create, write, sync, close, rename, syncdir, read, cancel
	path   string
	temp   bool // the fault is in reading the temporary files of path's folder, not path
	open   int
	at     int64
	cancel context.CancelFunc

	mu     sync.Mutex
	opened int
	fired  bool
}

func (s *scStick) String() string {
	switch s.fault {
	case "write":
		return fmt.Sprintf("write after %d bytes", s.at)
	case "read", "cancel":
		return fmt.Sprintf("%s at byte %d of reading %d", s.fault, s.at, s.open)
	}
	return s.fault
}

// fire records that the fault happened.
func (s *scStick) fire() {
	s.mu.Lock()
	s.fired = true
	s.mu.Unlock()
}

func (s *scStick) happened() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired
}

func (s *scStick) CreateTemp(dir, pattern string) (bundle.File, error) {
	if s.fault == "create" {
		s.fire()
		return nil, &os.PathError{Op: "open", Path: dir, Err: syscall.EROFS}
	}
	f, err := s.OSFS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &scStickFile{File: f, s: s}, nil
}

func (s *scStick) Rename(oldpath, newpath string) error {
	if s.fault == "rename" {
		s.fire()
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EIO}
	}
	return s.OSFS.Rename(oldpath, newpath)
}

func (s *scStick) SyncDir(dir string) error {
	if s.fault == "syncdir" {
		s.fire()
		return &os.PathError{Op: "sync", Path: dir, Err: syscall.EIO}
	}
	return s.OSFS.SyncDir(dir)
}

func (s *scStick) Open(name string) (io.ReadCloser, error) {
	f, err := s.OSFS.Open(name)
	ours := name == s.path || s.temp && bundle.IsTemp(name) && filepath.Dir(name) == filepath.Dir(s.path)
	if err != nil || !ours || s.fault != "read" && s.fault != "cancel" {
		return f, err
	}
	s.mu.Lock()
	s.opened++
	n := s.opened
	s.mu.Unlock()
	if n != s.open {
		return f, nil
	}
	return &scStickReader{ReadCloser: f, s: s, left: s.at}, nil
}

// scStickReader reads left bytes, then fails, or cancels and goes on.
type scStickReader struct {
	io.ReadCloser
	s    *scStick
	left int64
	done bool
}

func (r *scStickReader) Read(p []byte) (int, error) {
	if !r.done && r.left == 0 {
		r.s.fire()
		if r.s.fault == "read" {
			return 0, &os.PathError{Op: "read", Path: r.s.path, Err: syscall.EIO}
		}
		r.s.cancel()
		r.done = true
	}
	if !r.done && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	return n, err
}

// scStickFile is a file on the stick being written.
type scStickFile struct {
	bundle.File
	s       *scStick
	written int64
}

func (f *scStickFile) Write(p []byte) (int, error) {
	if f.s.fault == "write" && f.written+int64(len(p)) > f.s.at {
		n, _ := f.File.Write(p[:f.s.at-f.written]) // part of it is on the stick
		f.written += int64(n)
		f.s.fire()
		return n, syscall.ENOSPC
	}
	n, err := f.File.Write(p)
	f.written += int64(n)
	return n, err
}

func (f *scStickFile) Sync() error {
	if f.s.fault == "sync" {
		f.s.fire()
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *scStickFile) Close() error {
	err := f.File.Close()
	if f.s.fault == "close" {
		f.s.fire()
		return syscall.EIO
	}
	return err
}
