package store

import (
	"context"
	"testing"
)

// TestHardDeleteUnserializedRow: hard-deleting an app row that was never
// serialized still records its erasure, so that the record of the same id
// on other devices is erased when the erasure reaches them.
func TestHardDeleteUnserializedRow(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice')`, aliceID, dsID)
	if err := d.db.HardDelete(ctx, "person", aliceID); err != nil {
		t.Fatal(err)
	}
	r := d.storeRow(aliceID)
	if r == nil || !r.HardDeleted || !r.Deleted || r.Serialized != "{}" || r.Partition != dsID+":user-ro:"+aliceID {
		t.Fatalf("record after hard delete: %+v", r)
	}
	if n := d.count(`SELECT count(*) FROM person`); n != 0 {
		t.Errorf("app row still there")
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Errorf("%d rows left to serialize", n)
	}
}
