package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestOneFileTwoNamesKeepsInstance checks that one database file opened
// alternately by two names (its real path and a symbolic link to it, as
// the app's service and a user's command may) keeps one instance: the
// path recorded is the file's real path, so neither name makes the file
// look moved or copied.
func TestOneFileTwoNamesKeepsInstance(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	first, err := d.db.Instance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.db.Close()
	link := filepath.Join(t.TempDir(), "link.sqlite3")
	if err := os.Symlink(d.path, link); err != nil {
		t.Skip(err)
	}
	// A path through a linked folder names the file too.
	folder := filepath.Join(t.TempDir(), "folder")
	if err := os.Symlink(filepath.Dir(d.path), folder); err != nil {
		t.Skip(err)
	}
	viaFolder := filepath.Join(folder, filepath.Base(d.path))
	real, err := filepath.EvalSymlinks(d.path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{first.ID: true}
	for i, p := range []string{link, d.path, viaFolder, link, d.path} {
		db, err := Open(ctx, p, &Options{SystemID: "sys-a.sqlite3", NodeID: "node"})
		if err != nil {
			t.Fatal(err)
		}
		in, err := db.Instance(ctx)
		if got := db.Path(); got != real {
			t.Errorf("opened via %s: Path() = %s, want the real path %s", p, got, real)
		}
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		seen[in.ID] = true
		t.Logf("open %d via %s: instance %s", i+1, p, in.ID[:8])
	}
	if len(seen) != 1 {
		t.Errorf("one file opened by two names alternately took %d instances; want 1", len(seen))
	}
}

// TestPathRecordedThroughLinkKeepsInstance checks that a database whose
// instance was recorded under a symbolic link's path (as before the path
// was resolved) keeps its instance when opened by its real path: the
// recorded path names the same file.
func TestPathRecordedThroughLinkKeepsInstance(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	first, err := d.db.Instance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.db.Close()
	link := filepath.Join(t.TempDir(), "link.sqlite3")
	if err := os.Symlink(d.path, link); err != nil {
		t.Skip(err)
	}
	if _, err := d.app.Exec(`UPDATE morango_instanceid SET db_path = ? WHERE id = ?`, link, first.ID); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, d.path, &Options{SystemID: "sys-a.sqlite3", NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	in, err := db.Instance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != first.ID {
		t.Errorf("opened by its real path after one recorded through a link: instance %s, want %s", in.ID, first.ID)
	}
}
