package store

import (
	"context"
	"fmt"
	"testing"
)

// chunk sets SerializeChunk to n for the rest of the test.
func chunk(t *testing.T, n int64) {
	saved := SerializeChunk
	t.Cleanup(func() { SerializeChunk = saved })
	SerializeChunk = n
}

// TestSerializeInChunks: Serialize writes at most SerializeChunk changed
// rows per transaction, each with a counter of its own, and ends with the
// same records as one serialization of everything. A row that cannot be
// serialized takes its share of a chunk and stays waiting, without making
// Serialize loop.
func TestSerializeInChunks(t *testing.T) {
	ctx := context.Background()
	chunk(t, SerializeChunk)

	write := func(d *device) {
		d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
		for i := range 4 {
			person := fmt.Sprintf("%031x%d", 0xa, i)
			d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, ?)`, person, dsID, fmt.Sprint("learner ", i))
			d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'hi')`, fmt.Sprintf("%031x%d", 0xb, i), dsID, person)
		}
		d.exec(`INSERT INTO person (id, dataset_id, name) VALUES ('not an id', ?, 'Bad')`, dsID)
	}
	whole, chunked := newDevice(t, "whole"), newDevice(t, "chunked")
	whole.init(ctx)
	chunked.init(ctx)
	write(whole)
	write(chunked)

	SerializeChunk = 1 << 30
	all := whole.serialize(ctx)
	SerializeChunk = 3
	parts := chunked.serialize(ctx)

	// 9 records and one refused row: 10 changed rows, 4 chunks of 3.
	if all.Created != 9 || all.Failed != 1 || all.Counter != 1 {
		t.Fatalf("one transaction: %+v", all)
	}
	if parts.Created != 9 || parts.Failed != 1 || parts.Counter != 4 {
		t.Fatalf("chunks: %+v", parts)
	}
	me := chunked.db.instance.ID
	if n := chunked.count(`SELECT counter FROM morango_databasemaxcounter WHERE instance_id = ? AND partition = ''`, me); n != 4 {
		t.Errorf("database-max counter %d, want 4", n)
	}
	if n := chunked.count(`SELECT count(*) FROM morango_dirty WHERE id = 'not an id' AND error <> ''`); n != 1 {
		t.Errorf("the refused row is not waiting with its reason")
	}
	if n := chunked.count(`SELECT count(*) FROM morango_dirty`); n != 1 {
		t.Errorf("%d rows still dirty, want 1", n)
	}
	// Parents go first: the dataset and the people are in the first
	// chunks, and every record's history holds exactly its own version.
	counters := map[int64]int{}
	rows, err := chunked.app.Query(`SELECT id, last_saved_counter FROM morango_store`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		var c int64
		if err := rows.Scan(&id, &c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		counters[c]++
	}
	rows.Close()
	if len(ids) != 9 || counters[1] != 3 || counters[2]+counters[3]+counters[4] != 6 {
		t.Errorf("records per counter %v", counters)
	}
	if r := chunked.storeRow(dsID); r == nil || r.LSC != 1 {
		t.Errorf("dataset record %+v, want it in the first chunk", r)
	}
	for _, id := range ids {
		r, w := chunked.storeRow(id), whole.storeRow(id)
		if w == nil || r.Serialized != w.Serialized || r.Partition != w.Partition || r.Model != w.Model {
			t.Errorf("%s: chunked %+v, whole %+v", id, r, w)
		}
		if h := chunked.history(id); len(h) != 1 || h[me] != r.LSC {
			t.Errorf("%s: history %v, version %d", id, h, r.LSC)
		}
	}

	// Nothing left: no counter is used.
	if r := chunked.serialize(ctx); r.Counter != 0 || r.Versions() != 0 || r.Failed != 1 {
		t.Errorf("idle serialization: %+v", r)
	}
}

// TestSerializeBulkInChunks: a first serialization of many rows in several
// transactions drops the partition index in the first and rebuilds it in
// the last; a store left without it (a serialization stopped in between)
// gets it back when it is opened.
func TestSerializeBulkInChunks(t *testing.T) {
	ctx := context.Background()
	savedChunk, savedBulk := SerializeChunk, minBulk
	t.Cleanup(func() { SerializeChunk, minBulk = savedChunk, savedBulk })
	SerializeChunk, minBulk = 4, 2

	d := newDevice(t, "bulk")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	for i := range 10 {
		d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'p')`, fmt.Sprintf("%031x%d", 0xc, i), dsID)
	}
	hasIndex := func() bool {
		t.Helper()
		return d.count(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'morango_store_partition'`) == 1
	}
	if r := d.serialize(ctx); r.Created != 11 || r.Counter != 3 {
		t.Fatalf("serialize: %+v", r)
	}
	if !hasIndex() {
		t.Fatal("the partition index was not rebuilt")
	}
	if n := d.count(`SELECT count(*) FROM morango_store INDEXED BY morango_store_partition WHERE partition >= ''`); n != 11 {
		t.Errorf("the rebuilt index holds %d records, want 11", n)
	}

	d.exec(`DROP INDEX morango_store_partition`)
	d.db.Close()
	db, err := Open(ctx, d.path, &Options{SystemID: "sys-bulk.sqlite3", NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	d.db = db
	if !hasIndex() {
		t.Error("opening the store did not restore the partition index")
	}
}
