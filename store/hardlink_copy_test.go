package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestHardLinkThenCopyGetsOwnInstance: a database file F at path A has a
// second name B (a hard link). A copy Y of it is taken (a backup, VACUUM
// INTO): Y records A, as F does. F is then opened by its other name B, and
// Y is put at A (renamed over it, which breaks the link: A and B are now
// two files, F at B and Y at A). Both are live databases, and must not
// write under one instance id: their counters would collide. So a hard
// link is not taken for the same file: F opened at B takes a new instance.
func TestHardLinkThenCopyGetsOwnInstance(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	first, err := d.db.Instance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.db.Close()
	dir := t.TempDir()
	b := filepath.Join(dir, "b.sqlite3")
	if err := os.Link(d.path, b); err != nil {
		t.Skip(err)
	}
	y := filepath.Join(dir, "copy.sqlite3")
	if _, err := d.app.Exec(`VACUUM INTO ?`, y); err != nil {
		t.Fatal(err)
	}
	d.app.Close()
	opts := &Options{SystemID: "sys-a.sqlite3", NodeID: "node"}
	instanceAt := func(p string) string {
		t.Helper()
		db, err := Open(ctx, p, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		in, err := db.Instance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return in.ID
	}
	t.Logf("F opened through its hard link B: instance %s (at A: %s)", instanceAt(b)[:8], first.ID[:8])
	// The copy takes A's place: F lives on at B only.
	if err := os.Rename(y, d.path); err != nil {
		t.Fatal(err)
	}
	idF, idY := instanceAt(b), instanceAt(d.path)
	t.Logf("F at B: %s, copy Y at A: %s", idF[:8], idY[:8])
	if idF == idY {
		t.Errorf("two distinct database files (F at %s, its copy at %s) both write under instance %s", b, d.path, idF[:8])
	}
}
