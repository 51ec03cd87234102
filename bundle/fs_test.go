package bundle

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultyFS is the OS's filesystem with one operation failing on purpose,
// as a full or pulled stick would make it fail.
type faultyFS struct {
	OSFS
	fail string // create, write, sync, close, rename, syncdir
}

var errInjected = errors.New("injected failure")

func (f faultyFS) CreateTemp(dir, pattern string) (File, error) {
	if f.fail == "create" {
		return nil, &os.PathError{Op: "open", Path: dir, Err: syscall.EROFS}
	}
	file, err := f.OSFS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: file, fail: f.fail}, nil
}

func (f faultyFS) Rename(oldpath, newpath string) error {
	if f.fail == "rename" {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errInjected}
	}
	return f.OSFS.Rename(oldpath, newpath)
}

func (f faultyFS) SyncDir(dir string) error {
	if f.fail == "syncdir" {
		return errInjected
	}
	return f.OSFS.SyncDir(dir)
}

type faultyFile struct {
	File
	fail    string
	written int
}

func (f *faultyFile) Write(p []byte) (int, error) {
	// Fail once part of the file is on the device: a partial file.
	if f.fail == "write" && f.written > 100 {
		return 0, syscall.ENOSPC
	}
	n, err := f.File.Write(p)
	f.written += n
	return n, err
}

func (f *faultyFile) Sync() error {
	if f.fail == "sync" {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *faultyFile) Close() error {
	err := f.File.Close()
	if f.fail == "close" {
		return syscall.EIO
	}
	return err
}

// writeSample writes a bundle of a few hundred records.
func writeSample(t *testing.T) func(io.Writer) error {
	recs := realisticRecords(300)
	key := goldenKey(t)
	return func(w io.Writer) error {
		bw, err := NewWriter(w, headerFor(recs), key, nil)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := bw.Write(r); err != nil {
				return err
			}
		}
		return bw.Close()
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a-to-b.bundle")
	if err := WriteFile(OSFS{}, path, writeSample(t)); err != nil {
		t.Fatal(err)
	}
	names, err := OSFS{}.ReadDir(dir)
	if err != nil || len(names) != 1 || names[0] != "a-to-b.bundle" {
		t.Fatalf("folder holds %v, %v", names, err)
	}
	f, err := OSFS{}.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if s, err := Inspect(f, keyOpts(t)); err != nil || s.Records != 300 || s.Signature != SignatureValid {
		t.Errorf("reading back: %+v, %v", s, err)
	}
}

func TestWriteFileFailures(t *testing.T) {
	callerErr := errors.New("database is locked")
	for _, tc := range []struct {
		fail  string
		write func(io.Writer) error
		hint  string // what the error must say
	}{
		{"create", nil, "mounted and writable"},
		{"write", nil, "full or failing"},
		{"caller", func(w io.Writer) error { w.Write([]byte("partial")); return callerErr }, "database is locked"},
		{"sync", nil, "full or failing"},
		{"close", nil, "full or failing"},
		{"rename", nil, "rename"},
		{"syncdir", nil, "failing"},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "a-to-b.bundle")
			write := tc.write
			if write == nil {
				write = writeSample(t)
			}
			err := WriteFile(faultyFS{fail: tc.fail}, path, write)
			if err == nil {
				t.Fatal("WriteFile succeeded")
			}
			if !strings.Contains(err.Error(), tc.hint) || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not say %q and where", err, tc.hint)
			}
			if tc.fail == "caller" && (!errors.Is(err, callerErr) || strings.Contains(err.Error(), "stick")) {
				t.Errorf("the caller's error became %q", err)
			}
			names, rerr := OSFS{}.ReadDir(dir)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if len(names) != 0 {
				t.Errorf("left behind: %v", names)
			}
		})
	}
}

func TestWriteFileKeepsOldFile(t *testing.T) {
	// A failed write before the rename leaves the previous file in place.
	dir := t.TempDir()
	path := filepath.Join(dir, "b.manifest")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(faultyFS{fail: "sync"}, path, writeSample(t)); err == nil {
		t.Fatal("WriteFile succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "old" {
		t.Errorf("previous file: %q, %v", b, err)
	}
	if names, _ := (OSFS{}).ReadDir(dir); len(names) != 1 {
		t.Errorf("folder holds %v", names)
	}
}

func TestIsTemp(t *testing.T) {
	var created string
	fsys := recordingFS{created: &created}
	if err := WriteFile(fsys, filepath.Join(t.TempDir(), "x*y.bundle"), func(w io.Writer) error { return errInjected }); err == nil {
		t.Fatal("WriteFile succeeded")
	}
	if !IsTemp(created) || !IsTemp(filepath.Base(created)) {
		t.Errorf("IsTemp(%q) = false", created)
	}
	for _, name := range []string{"a.bundle", "a.manifest", ".hidden", "notes.tmp", "a.bundle.morango-tmp"} {
		if IsTemp(name) {
			t.Errorf("IsTemp(%q) = true", name)
		}
	}
}

type recordingFS struct {
	OSFS
	created *string
}

func (r recordingFS) CreateTemp(dir, pattern string) (File, error) {
	f, err := r.OSFS.CreateTemp(dir, pattern)
	if err == nil {
		*r.created = f.Name()
	}
	return f, err
}

// TestTempTarget checks that the name of a temporary file tells the file
// it is written for.
func TestTempTarget(t *testing.T) {
	var created string
	fsys := recordingFS{created: &created}
	if err := WriteFile(fsys, filepath.Join(t.TempDir(), "a-to-b.bundle"), func(w io.Writer) error { return errInjected }); err == nil {
		t.Fatal("WriteFile succeeded")
	}
	if got, ok := TempTarget(created); !ok || got != "a-to-b.bundle" {
		t.Errorf("TempTarget(%q) = %q, %v; want a-to-b.bundle", created, got, ok)
	}
	for _, name := range []string{"a.bundle", ".morango-tmp", "..morango-tmp"} {
		if got, ok := TempTarget(name); ok {
			t.Errorf("TempTarget(%q) = %q, true", name, got)
		}
	}
}

// TestStaleTemp checks that a temporary file counts as abandoned only once
// unmodified for TempMaxAge.
func TestStaleTemp(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".a.bundle.1.morango-tmp")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if StaleTemp(OSFS{}, path, now) {
		t.Error("a file just written is stale")
	}
	if !StaleTemp(OSFS{}, path, now.Add(TempMaxAge+time.Second)) {
		t.Errorf("a file unmodified for %v is not stale", TempMaxAge)
	}
	if StaleTemp(OSFS{}, path+"-gone", now.Add(2*TempMaxAge)) {
		t.Error("a missing file is stale")
	}
}

// removingFS is the OS's filesystem with another process removing the
// temporary file being written just before it is renamed.
type removingFS struct {
	OSFS
}

func (r removingFS) Rename(oldpath, newpath string) error {
	os.Remove(oldpath)
	return r.OSFS.Rename(oldpath, newpath)
}

// TestWriteFileTempRemoved checks that a write whose temporary file another
// process removed says so (ErrTempRemoved), rather than blaming the
// folder's permissions or free space.
func TestWriteFileTempRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.bundle")
	err := WriteFile(removingFS{}, path, writeSample(t))
	if !errors.Is(err, ErrTempRemoved) || strings.Contains(err.Error(), "permissions") {
		t.Errorf("rename after removal: %v; want ErrTempRemoved", err)
	}
	err = WriteFileChecked(OSFS{}, path, writeSample(t), func(name string) error {
		os.Remove(name)
		_, err := os.Open(name)
		return err
	})
	if !errors.Is(err, ErrTempRemoved) {
		t.Errorf("read back after removal: %v; want ErrTempRemoved", err)
	}
	if names, _ := (OSFS{}).ReadDir(dir); len(names) != 0 {
		t.Errorf("left %q", names)
	}
}
