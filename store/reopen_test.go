package store

import (
	"context"
	"fmt"
	"testing"
)

// A first serialization in several transactions goes without the store's
// partition index between its first and its last. Another handle opened
// meanwhile (any command, `morango status` as well) restores the index;
// the serialization must then end with it, not fail on it.
func TestOpenDuringChunkedSerialize(t *testing.T) {
	ctx := context.Background()
	savedChunk, savedBulk := SerializeChunk, minBulk
	t.Cleanup(func() { SerializeChunk, minBulk = savedChunk, savedBulk })
	SerializeChunk, minBulk = 5, 2

	d := newDevice(t, "reopen")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	tx, err := d.app.Begin()
	if err != nil {
		t.Fatal(err)
	}
	const people = 3000
	for i := range people {
		if _, err := tx.Exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'p')`, fmt.Sprintf("%032x", 0xc0000+i), dsID); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.db.Serialize(ctx)
		done <- err
	}()
	indexed := `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'morango_store_partition'`
	for d.count(indexed) == 1 {
		select {
		case err := <-done:
			t.Fatalf("serialization ended (%v) before the index was seen missing", err)
		default:
		}
	}
	other, err := Open(ctx, d.path, &Options{SystemID: "sys-reopen", NodeID: "node"})
	if err != nil {
		t.Fatalf("open during the serialization: %v", err)
	}
	other.Close()
	if err := <-done; err != nil {
		t.Fatalf("serialization: %v", err)
	}
	if n := d.count(indexed); n != 1 {
		t.Fatalf("%d partition indexes", n)
	}
	if n := d.count(`SELECT count(*) FROM morango_store`); n != people+1 {
		t.Fatalf("%d records, want %d", n, people+1)
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Fatalf("%d rows left to serialize", n)
	}
	// The index holds every record.
	if n := d.count(`SELECT count(*) FROM morango_store INDEXED BY morango_store_partition WHERE partition >= ''`); n != people+1 {
		t.Fatalf("the index holds %d records, want %d", n, people+1)
	}
	if problems, res := verifyAll(t, d.path); !res.OK() {
		t.Fatalf("verify: %+v", problems)
	}
}
