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

// A database that renewed its instance (RenewIfOlder) lists the instance it
// left, with the counter it reached, among its earlier instances; a copy at
// another path does not list the original's instance, which is another
// file's.
func TestEarlierInstancesAfterRenewal(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.serialize(ctx)
	first, err := d.db.Instance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.db.EarlierInstances(ctx); err != nil || len(got) != 0 {
		t.Fatalf("before any renewal: %v, %v", got, err)
	}
	if ok, err := d.db.RenewIfOlder(ctx, first.Counter+1); err != nil || !ok {
		t.Fatalf("renew: %v, %v", ok, err)
	}
	second, err := d.db.Instance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.db.EarlierInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[first.ID] != first.Counter {
		t.Errorf("after a renewal: earlier instances %v, want %s at %d", got, first.ID[:8], first.Counter)
	}
	if _, ok := got[second.ID]; ok {
		t.Errorf("the current instance is listed among the earlier ones")
	}
	d.db.Close()

	copyPath := filepath.Join(t.TempDir(), "copy.sqlite3")
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(d.path + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err == nil {
			if err := os.WriteFile(copyPath+suffix, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cp, err := Open(ctx, copyPath, &Options{SystemID: "sys-a.sqlite3", NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if got, err := cp.EarlierInstances(ctx); err != nil || len(got) != 0 {
		t.Errorf("a copy at another path lists the original's instances as its own: %v, %v", got, err)
	}
}

// Transfer returns a transfer session by id with the stage it reached, and
// nil for one never recorded.
func TestTransferByID(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	tr := &Transfer{ID: ids.Random(), Push: true, Kind: "disk", Path: "x", Stage: "serializing", Status: "started"}
	if err := d.db.CreateTransfer(ctx, tr); err != nil {
		t.Fatal(err)
	}
	got, err := d.db.Transfer(ctx, tr.ID)
	if err != nil || got == nil || got.ID != tr.ID || !got.Push || got.Stage != "serializing" || got.Status != "started" {
		t.Errorf("Transfer: %+v, %v", got, err)
	}
	if got, err := d.db.Transfer(ctx, ids.Random()); err != nil || got != nil {
		t.Errorf("unknown transfer: %+v, %v", got, err)
	}
}
