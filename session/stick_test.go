package session

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/morango-sync/morango/bundle"
)

// stickFS is the OS's filesystem behaving like a USB stick that fails: it
// is pulled out while a file is read (reads fail after readOK bytes of the
// failOpen-th opening, counting from 1), or it is full or pulled out while
// a file is written (op names the write operation that fails).
type stickFS struct {
	bundle.OSFS
	failOpen int
	readOK   int64
	op       string // create, write, sync, close, rename, syncdir

	mu     sync.Mutex
	opened int
	read   []int64 // bytes read through each opening
}

func (s *stickFS) Open(name string) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opened++
	n := s.opened
	s.read = append(s.read, 0) // bytes read through opening n
	s.mu.Unlock()
	f, err := s.OSFS.Open(name)
	if err != nil {
		return f, err
	}
	if n == s.failOpen && s.readOK == 0 {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EIO}
	}
	left := int64(-1)
	if n == s.failOpen {
		left = s.readOK
	}
	return &pulledReader{ReadCloser: f, left: left, fs: s, i: n - 1}, nil
}

func (s *stickFS) CreateTemp(dir, pattern string) (bundle.File, error) {
	if s.op == "create" {
		return nil, &os.PathError{Op: "open", Path: dir, Err: syscall.EROFS}
	}
	f, err := s.OSFS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &stickFile{File: f, op: s.op}, nil
}

func (s *stickFS) Rename(oldpath, newpath string) error {
	if s.op == "rename" {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EIO}
	}
	return s.OSFS.Rename(oldpath, newpath)
}

func (s *stickFS) SyncDir(dir string) error {
	if s.op == "syncdir" {
		return &os.PathError{Op: "sync", Path: dir, Err: syscall.EIO}
	}
	return s.OSFS.SyncDir(dir)
}

// pulledReader counts what is read through it and, unless left is
// negative, fails with EIO once left bytes have been read.
type pulledReader struct {
	io.ReadCloser
	left int64
	fs   *stickFS
	i    int
}

func (r *pulledReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, &os.PathError{Op: "read", Path: "stick", Err: syscall.EIO}
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.ReadCloser.Read(p)
	if r.left > 0 {
		r.left -= int64(n)
	}
	r.fs.mu.Lock()
	r.fs.read[r.i] += int64(n)
	r.fs.mu.Unlock()
	return n, err
}

type stickFile struct {
	bundle.File
	op      string
	written int
}

func (f *stickFile) Write(p []byte) (int, error) {
	if f.op == "write" && f.written > 4096 {
		return 0, syscall.ENOSPC // part of the file is on the stick
	}
	n, err := f.File.Write(p)
	f.written += n
	return n, err
}

func (f *stickFile) Sync() error {
	if f.op == "sync" {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *stickFile) Close() error {
	err := f.File.Close()
	if f.op == "close" {
		return syscall.EIO
	}
	return err
}

// seedLogs gives the learner n content logs, enough for a bundle of many
// frames.
func seedLogs(d *device, f facilityData, n int) {
	d.t.Helper()
	tx, err := d.app.Begin()
	if err != nil {
		d.t.Fatal(err)
	}
	defer tx.Rollback()
	for i := range n {
		if _, err := tx.Exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (lower(hex(randomblob(16))), ?, ?, ?, ?)`,
			f.dataset, f.learner, "content-"+strings.Repeat("x", i%7), float64(i%100)/100); err != nil {
			d.t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		d.t.Fatal(err)
	}
}

// A stick pulled out while a bundle is read, at points throughout each
// reading of the file the import makes: the import fails with an error that
// says what happened and what to do, the database is exactly as it was, and
// the import completes once the stick is back.
func TestStickPulledDuringImport(t *testing.T) {
	a, b, c := newDevice(t, "a"), newDevice(t, "b"), newDevice(t, "c")
	a.root()
	grant(t, a, b, "full-facility", map[string]string{"dataset_id": a.cert})
	grant(t, a, c, "full-facility", map[string]string{"dataset_id": a.cert})
	f := seedFacility(a)
	seedLogs(a, f, 3000)
	path := filepath.Join(t.TempDir(), "a-to-b.bundle")
	a.export(path, "")
	// How much each opening reads, from an import that completes.
	clean := &stickFS{}
	if _, err := Import(t.Context(), c.db, &DiskConnection{FS: clean, Bundle: path}, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Everything but the record of the failed attempts, which the next
	// attempt resumes.
	tables := slices.DeleteFunc(allTables(t, b.app), func(n string) bool {
		return n == "morango_syncsession" || n == "morango_transfersession"
	})
	before := dump(t, b.app, tables)
	for k, n := range clean.read {
		points := []int64{0, 1, n / 3, n / 2, n - 1}
		if n < fi.Size() {
			// A reading of the header alone: a buffered reader may read
			// ahead of what it needs, so only its first bytes count.
			points = points[:2]
		}
		for _, at := range points {
			_, err := Import(t.Context(), b.db, &DiskConnection{FS: &stickFS{failOpen: k + 1, readOK: at}, Bundle: path}, ImportOptions{})
			if err == nil {
				t.Fatalf("reading %d, pulled after %d of %d bytes: the import succeeded", k+1, at, n)
			}
			if !errors.Is(err, syscall.EIO) || !hasHint(err) {
				t.Errorf("reading %d, %d bytes: error %q does not carry the I/O error and a hint", k+1, at, err)
			}
			if d := diffStates(before, dump(t, b.app, tables)); d != "" {
				t.Fatalf("reading %d, %d bytes: the failed import changed the database:\n%s", k+1, at, d)
			}
		}
	}
	b.mustImport(path)
	// Each failed attempt is on record with its error; one completed.
	failed := b.count(`SELECT count(*) FROM morango_transfersession WHERE NOT active AND transfer_stage_status = 'errored' AND error LIKE '%input/output error%'`)
	done := b.count(`SELECT count(*) FROM morango_transfersession WHERE NOT active AND transfer_stage_status = 'completed' AND error = ''`)
	if all := b.count(`SELECT count(*) FROM morango_transfersession`); done != 1 || failed != all-1 {
		t.Errorf("transfer sessions: %d in all, %d failed with the I/O error, %d completed", all, failed, done)
	}
	if d := diffStates(a.syncState(), b.syncState()); d != "" {
		t.Fatalf("after the import that completed:\n%s", d)
	}
}

// A stick that is full or pulled out while a bundle is written: the export
// fails with an error naming the stick, no file is left under the bundle's
// name or as a temporary file, and the next export to a working stick
// carries everything (nothing the app wrote is lost).
func TestStickFailsDuringExport(t *testing.T) {
	a, b := newDevice(t, "a"), newDevice(t, "b")
	a.root()
	grant(t, a, b, "full-facility", map[string]string{"dataset_id": a.cert})
	f := seedFacility(a)
	seedLogs(a, f, 2000)
	dir := t.TempDir()
	path := filepath.Join(dir, "a-to-b.bundle")
	for _, op := range []string{"create", "write", "sync", "close", "rename", "syncdir"} {
		_, err := Export(t.Context(), a.db, &DiskConnection{FS: &stickFS{op: op}, Bundle: path}, ExportOptions{CertID: a.cert})
		if err == nil {
			t.Fatalf("%s fails: the export succeeded", op)
		}
		if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "stick") && !strings.Contains(msg, "folder") {
			t.Errorf("%s fails: error %q does not say where and what to do", op, err)
		}
		names, err := bundle.OSFS{}.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 0 {
			t.Fatalf("%s fails: left on the stick: %v", op, names)
		}
		// The app keeps writing between attempts.
		a.exec(`UPDATE contentlog SET progress = progress + 0.001 WHERE id = ?`, f.learnerLog)
	}
	a.export(path, "")
	b.mustImport(path)
	if d := diffStates(a.syncState(), b.syncState()); d != "" {
		t.Fatalf("after the export that completed:\n%s", d)
	}
	want := a.count(`SELECT count(*) FROM contentlog`)
	if got := b.count(`SELECT count(*) FROM contentlog`); got != want || want != 2002 {
		t.Fatalf("b holds %d content logs, a %d, want 2002", got, want)
	}
	if names, _ := (bundle.OSFS{}).ReadDir(dir); !slices.Equal(names, []string{"a-to-b.bundle"}) {
		t.Errorf("the stick holds %v", names)
	}
}

// flipFS silently stores one wrong byte of every file written through it:
// a stick that fails without saying so.
type flipFS struct{ bundle.OSFS }

func (f flipFS) CreateTemp(dir, pattern string) (bundle.File, error) {
	file, err := f.OSFS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &flipFile{File: file}, nil
}

type flipFile struct {
	bundle.File
	off int64
}

func (f *flipFile) Write(p []byte) (int, error) {
	const at = 3000 // inside the compressed records
	if f.off <= at && at < f.off+int64(len(p)) {
		q := append([]byte(nil), p...)
		q[at-f.off] ^= 0x40
		p = q
	}
	n, err := f.File.Write(p)
	f.off += int64(n)
	return n, err
}

// An export reads its bundle back before the file takes the bundle's name:
// a stick that damages what it stores fails the export, and the bundle an
// earlier export left under that name is still there, whole.
func TestStickDamagesSilently(t *testing.T) {
	a, b := newDevice(t, "a"), newDevice(t, "b")
	a.root()
	grant(t, a, b, "full-facility", map[string]string{"dataset_id": a.cert})
	f := seedFacility(a)
	seedLogs(a, f, 500)
	dir := t.TempDir()
	path := filepath.Join(dir, "a-to-b.bundle")
	a.export(path, "")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a.exec(`UPDATE contentlog SET progress = 0.5 WHERE id = ?`, f.learnerLog)
	_, err = Export(t.Context(), a.db, &DiskConnection{FS: flipFS{}, Bundle: path}, ExportOptions{CertID: a.cert})
	if err == nil || !strings.Contains(err.Error(), "reading back") || !hasHint(err) {
		t.Fatalf("export to a stick that damages the file: %v, want a read-back error with a hint", err)
	}
	now, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the earlier bundle is gone: %v", err)
	}
	if !bytes.Equal(now, good) {
		t.Fatal("the failed export replaced the earlier bundle")
	}
	if names, _ := (bundle.OSFS{}).ReadDir(dir); !slices.Equal(names, []string{"a-to-b.bundle"}) {
		t.Errorf("the stick holds %v", names)
	}
	// The earlier bundle imports, and the next export carries the change.
	b.mustImport(path)
	a.export(path, "")
	b.mustImport(path)
	if d := diffStates(a.syncState(), b.syncState()); d != "" {
		t.Fatalf("after the export that completed:\n%s", d)
	}
}
