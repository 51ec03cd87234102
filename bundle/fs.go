package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// FS is the filesystem bundles and manifests are written to and read from:
// a folder on a USB stick, usually. Tests inject failures through it.
type FS interface {
	// CreateTemp creates a new file in dir whose name is pattern with its
	// last "*" replaced by a random string, as os.CreateTemp does.
	CreateTemp(dir, pattern string) (File, error)
	// Open opens a file for reading.
	Open(name string) (io.ReadCloser, error)
	// Rename renames a file, replacing newpath if it exists.
	Rename(oldpath, newpath string) error
	// Remove removes a file.
	Remove(name string) error
	// SyncDir flushes a folder's entries (a rename) to the device.
	SyncDir(dir string) error
	// ReadDir returns the names of the entries of a folder.
	ReadDir(dir string) ([]string, error)
	// Stat describes a file, following symbolic links.
	Stat(name string) (iofs.FileInfo, error)
}

// File is a file being written.
type File interface {
	io.Writer
	// Sync flushes what was written to the device.
	Sync() error
	Close() error
	// Name returns the file's path.
	Name() string
}

// OSFS is the operating system's filesystem.
type OSFS struct{}

var _ FS = OSFS{}

// CreateTemp calls os.CreateTemp.
func (OSFS) CreateTemp(dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }

// ErrNotRegular is returned by OSFS.Open for a name that is not a regular
// file (a named pipe, a device, a folder): opening a pipe found on a stick
// would wait for a writer that never comes.
var ErrNotRegular = errors.New("not a regular file")

// Open opens a regular file for reading, following symbolic links; it
// returns ErrNotRegular for any other kind of file, without opening it.
func (OSFS) Open(name string) (io.ReadCloser, error) {
	if fi, err := os.Stat(name); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	// The name may have changed kind since it was looked at.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = &os.PathError{Op: "open", Path: name, Err: ErrNotRegular}
		}
		return nil, err
	}
	return f, nil
}

// Rename calls os.Rename.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Remove calls os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Stat calls os.Stat.
func (OSFS) Stat(name string) (iofs.FileInfo, error) { return os.Stat(name) }

// ReadDir returns the names of dir's entries, sorted.
func (OSFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, err
}

// SyncDir opens dir and syncs it. Where folders cannot be synced (Windows,
// some filesystems of removable drives), it does nothing.
func (OSFS) SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, errors.ErrUnsupported) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// tempSuffix ends the name of every file WriteFile has not finished.
const tempSuffix = ".morango-tmp"

// IsTemp reports whether a file name is that of a file WriteFile is
// writing, or was writing and did not finish (the program was killed, the
// stick pulled). Such a file is never complete; but another process may be
// writing it still (see StaleTemp).
func IsTemp(name string) bool {
	name = filepath.Base(name)
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, tempSuffix)
}

// TempTarget returns the base name of the file a temporary file of
// WriteFile's is written for (without any "*" the name had), and whether
// name is that of such a temporary file.
func TempTarget(name string) (string, bool) {
	if !IsTemp(name) {
		return "", false
	}
	name = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "."), tempSuffix)
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", false
	}
	return name[:i], true
}

// TempMaxAge is how long a temporary file of WriteFile's goes unmodified
// before StaleTemp takes it as abandoned. A writer modifies its file as it
// writes, and reading it back takes minutes at most, even on a slow stick;
// but the time is stamped by the writer's clock and compared with the
// reader's, and devices offline for months keep clocks hours apart. A day
// covers both; the device that wrote an abandoned file removes it at its
// next exchange anyway.
const TempMaxAge = 24 * time.Hour

// StaleTemp reports whether the temporary file at path (see IsTemp) was
// last modified TempMaxAge or more before now: no live writer can be
// writing it, and it may be removed. A younger one may be another
// process's write in progress (two devices exchanging through one folder
// at once), which removing would make fail.
func StaleTemp(fsys FS, path string, now time.Time) bool {
	fi, err := fsys.Stat(path)
	return err == nil && now.Sub(fi.ModTime()) >= TempMaxAge
}

// ErrTempRemoved is returned by WriteFile when its temporary file was
// removed by another process before it took its final name.
var ErrTempRemoved = errors.New("another process removed the file being written; run the command again")

// WriteFile writes a file atomically: write is called with a temporary file
// in the same folder, which is then synced, closed and renamed to path,
// and the folder synced. On any error the temporary file is removed, and
// nothing is left under path either: if the last step, syncing the
// folder, fails, the renamed file is removed too, as its entry may not
// survive a power cut. A file that was at path before is then gone.
func WriteFile(fsys FS, path string, write func(io.Writer) error) error {
	return WriteFileChecked(fsys, path, write, nil)
}

// WriteFileChecked is WriteFile with a check of the written file: check,
// unless nil, is called with the temporary file's name once it is synced
// and closed, before it takes path's place. If check fails, the temporary
// file is removed and a file that was at path is left as it was.
func WriteFileChecked(fsys FS, path string, write func(io.Writer) error, check func(name string) error) (err error) {
	if err := MayReplace(fsys, path); err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := fsys.CreateTemp(dir, "."+strings.ReplaceAll(base, "*", "")+".*"+tempSuffix)
	if err != nil {
		return fmt.Errorf("create a file in %s (is the stick mounted and writable?): %w", dir, err)
	}
	tmp := f.Name()
	renamed, closed := false, false
	defer func() {
		if err == nil {
			return
		}
		if !closed {
			f.Close()
		}
		if renamed {
			fsys.Remove(path)
		} else {
			fsys.Remove(tmp)
		}
	}()

	w := &errWriter{w: f}
	if err := write(w); err != nil {
		if w.err != nil {
			return fmt.Errorf("write %s (the stick may be full or failing; write it again, or to another stick): %w", path, err)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flush %s to the device (the stick may be full or failing; write it again, or to another stick): %w", path, err)
	}
	if check != nil {
		// The check is to read what the device holds, not what the
		// system kept of it: a stick that drops writes silently (one that
		// claims more room than it has) is caught only that way.
		if fd, ok := f.(interface{ Fd() uintptr }); ok {
			dropCache(fd.Fd())
		}
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s (the stick may be full or failing; write it again, or to another stick): %w", path, err)
	}
	if check != nil {
		if err := check(tmp); err != nil {
			if removed(fsys, dir, tmp) {
				return fmt.Errorf("write %s: %w", path, ErrTempRemoved)
			}
			return err
		}
	}
	if err := fsys.Rename(tmp, path); err != nil {
		if removed(fsys, dir, tmp) {
			return fmt.Errorf("write %s: %w", path, ErrTempRemoved)
		}
		return fmt.Errorf("rename the new file to %s (check the folder's permissions and free space): %w", path, err)
	}
	renamed = true
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("flush folder %s to the device (the stick may be failing; write the file again): %w", dir, err)
	}
	return nil
}

// removed reports whether the temporary file tmp is gone from dir, which
// is still there: another process removed it (a stick pulled out takes
// the folder too).
func removed(fsys FS, dir, tmp string) bool {
	if _, err := fsys.Stat(tmp); !errors.Is(err, iofs.ErrNotExist) {
		return false
	}
	_, err := fsys.Stat(dir)
	return err == nil
}

// sqliteMagic begins every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// FileKind is what a file holds, as its first bytes tell.
type FileKind int

// The kinds of file KindOf tells apart.
const (
	KindNone     FileKind = iota // no such file
	KindEmpty                    // an empty file
	KindSQLite                   // a SQLite database
	KindBundle                   // a bundle
	KindManifest                 // a manifest
	KindJSON                     // JSON text: a certificate chain or request
	KindOther                    // anything else
)

var kindNames = [...]string{"nothing", "an empty file", "a SQLite database", "a bundle", "a manifest",
	"a JSON file (a certificate chain or request)", "a file of another kind"}

func (k FileKind) String() string { return kindNames[k] }

// KindOf tells what the file at path holds. A name that is not a regular
// file gives ErrNotRegular.
func KindOf(fsys FS, path string) (FileKind, error) {
	f, err := fsys.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return KindNone, nil
	}
	if err != nil {
		return KindOther, err
	}
	defer f.Close()
	head := make([]byte, 64)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return KindOther, err
	}
	head = head[:n]
	text := bytes.TrimLeft(head, " \t\r\n")
	switch {
	case n == 0:
		return KindEmpty, nil
	case bytes.HasPrefix(head, []byte(sqliteMagic)):
		return KindSQLite, nil
	case bytes.HasPrefix(head, bundleMagic[:]):
		return KindBundle, nil
	case bytes.HasPrefix(head, manifestMagic[:]):
		return KindManifest, nil
	case len(text) > 0 && (text[0] == '{' || text[0] == '['):
		return KindJSON, nil
	}
	return KindOther, nil
}

// MayReplace refuses a path whose file must not be replaced: a SQLite
// database, the write-ahead log, shared memory or journal beside one, or
// something other than a regular file. An output name mistyped as the
// database's (tab completion, swapped flags) would otherwise replace the
// app's data, or the changes it committed last, with a bundle.
func MayReplace(fsys FS, path string) error {
	k, err := KindOf(fsys, path)
	switch {
	case errors.Is(err, ErrNotRegular):
		return fmt.Errorf("%s is not a regular file (a folder?); name a file to write", path)
	case err != nil:
		return nil // the write itself reports what is wrong
	case k == KindSQLite:
		return fmt.Errorf("%s is a SQLite database, which writing would replace: name another file to write", path)
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if db, ok := strings.CutSuffix(path, suffix); ok {
			if k, err := KindOf(fsys, db); err == nil && k == KindSQLite {
				return fmt.Errorf("%s belongs to the SQLite database %s, whose last changes writing would destroy: name another file to write", path, db)
			}
		}
	}
	return nil
}

// MayReplaceWith is MayReplace for a file of kind want: a file already at
// path must be empty or of that kind (an older bundle, say), not one of
// another kind a mistyped name would destroy (a chain not yet imported).
func MayReplaceWith(fsys FS, path string, want FileKind) error {
	if err := MayReplace(fsys, path); err != nil {
		return err
	}
	k, err := KindOf(fsys, path)
	if err != nil || k == KindNone || k == KindEmpty || k == want {
		return nil
	}
	return fmt.Errorf("%s holds %s, not %s, which writing would replace: name another file to write", path, k, want)
}

// errWriter remembers whether the file itself failed a write, to tell such
// errors from those of the caller's write function.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
