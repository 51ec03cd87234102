package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// A database copied to another path, or opened on another machine, gets a
// new instance id with its own counter; back on the original machine and
// path, the original instance (and its counter) is current again.
func TestInstanceIDFollowsSystemFacts(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	orig, err := d.db.Instance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := ids.SHA2UUID(orig.DatabaseID, ids.SaltedHash("sys-a.sqlite3"), ids.SaltedHash("node")); orig.ID != want {
		t.Errorf("instance id %s, want sha2_uuid(database id, system id, node id) = %s", orig.ID, want)
	}
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.serialize(ctx)
	d.db.Close()

	// Another machine: the same file, other system facts.
	other, err := Open(ctx, d.path, &Options{SystemID: "another-machine", NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	in2, _ := other.Instance(ctx)
	if in2.ID == orig.ID || in2.Counter != 0 {
		t.Errorf("other machine: instance %+v", in2)
	}
	other.Close()

	// A copy at another path gets a new database id, hence a new instance.
	// (The app still has the database open, so its write-ahead log is
	// copied along, as a copy taken with the app running must be.)
	copyPath := filepath.Join(t.TempDir(), "copy.sqlite3")
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(d.path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copyPath+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := Open(ctx, copyPath, &Options{SystemID: "sys-a.sqlite3", NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	in3, _ := cp.Instance(ctx)
	if in3.ID == orig.ID || in3.DatabaseID == orig.DatabaseID {
		t.Errorf("copy kept the instance: %+v", in3)
	}
	cp.Close()
}
