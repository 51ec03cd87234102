package store

import "testing"

// An app row that takes the id of another model's record does not become a
// version of that record: it waits in morango_dirty with the reason, which
// status lists, and serializes once it has an id of its own.
func TestSerializeIDUsedByAnotherModel(t *testing.T) {
	ctx := t.Context()
	d := newDevice(t, "a")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'school')`, dsID)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice')`, aliceID, dsID)
	d.serialize(ctx)
	before := *d.storeRow(aliceID)
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'hello')`, aliceID, dsID, aliceID)
	r := d.serialize(ctx)
	if r.Failed != 1 || r.Created+r.Updated != 0 {
		t.Fatalf("serialize: %+v, want the note refused", r)
	}
	if after := *d.storeRow(aliceID); after != before {
		t.Fatalf("the person's record changed:\n%+v\n%+v", before, after)
	}
	st, err := d.db.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) != 1 || st.Problems[0].Model != "note" || st.Problems[0].Reason != "id is already used by a record of model person; give the row a new id" {
		t.Fatalf("status problems: %+v", st.Problems)
	}
	d.exec(`UPDATE note SET id = ? WHERE id = ?`, note1ID, aliceID)
	if r := d.serialize(ctx); r.Created != 1 || r.Failed != 0 {
		t.Fatalf("after the app gave the note its own id: %+v", r)
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Fatalf("%d rows still wait", n)
	}
	if row := d.storeRow(note1ID); row == nil || row.Model != "note" {
		t.Fatalf("note record: %+v", row)
	}
}
