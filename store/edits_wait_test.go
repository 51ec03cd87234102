package store

import (
	"context"
	"testing"
)

// A recorded note's edit puts a separator in dataset_id: it waits with an
// error in morango_dirty. Then another device edits the note and deletes
// its person: this device deletes the note as the child of a deleted
// parent and must record that deletion (the other devices wait for it),
// whatever error the row's edit left.
func TestCascadeDeletesRowWhoseEditWaits(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`UPDATE note SET dataset_id = dataset_id || ':x' WHERE id = ?`, note1ID)
	if res := d.serialize(ctx); res.Failed != 1 {
		t.Fatalf("edit: %+v, want it to wait", res)
	}
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`"}`, true)
	// The other device's edit of the note arrives with the deletion.
	d.putRecord(note1ID, "note", dsID+":user-rw:"+aliceID, `{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"theirs"}`, false)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM note`); n != 0 {
		t.Fatalf("the note of the deleted person is still in the app")
	}
	res := d.serialize(ctx)
	var errs []string
	rows, _ := d.app.Query(`SELECT id || ' ' || error FROM morango_dirty`)
	for rows.Next() {
		var s string
		rows.Scan(&s)
		errs = append(errs, s)
	}
	rows.Close()
	if r := d.storeRow(note1ID); r == nil || !r.Deleted {
		t.Errorf("the note's deletion was not recorded: record %+v, serialize %+v, dirty %q", r, res, errs)
	}
}

// Chunked serialization of edits of recorded rows, some failing, with a
// kept deletion and a deleted app row among them; then the failed ones are
// fixed and must be serialized.
func TestChunkedEditsThatWaitThenFixed(t *testing.T) {
	chunk(t, 2)
	ctx := context.Background()
	d := newDevice(t, "c")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'D')`, dsID)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'A')`, aliceID, dsID)
	var notes []string
	for i := 0; i < 7; i++ {
		id := string(rune('0'+i)) + note1ID[1:]
		notes = append(notes, id)
		d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'x')`, id, dsID, aliceID)
	}
	d.serialize(ctx)
	for i, id := range notes {
		switch i % 3 {
		case 0:
			d.exec(`UPDATE note SET dataset_id = dataset_id || ':x' WHERE id = ?`, id)
		case 1:
			d.exec(`UPDATE note SET person_id = NULL, body = 'y' WHERE id = ?`, id)
		default:
			d.exec(`DELETE FROM note WHERE id = ?`, id)
		}
	}
	res := d.serialize(ctx)
	if res.Failed != 5 || res.Deleted != 2 {
		t.Fatalf("serialize: %+v, want 5 failed and 2 deleted", res)
	}
	d.exec(`UPDATE note SET dataset_id = ?, person_id = ? WHERE id IN (?, ?, ?, ?, ?)`, dsID, aliceID, notes[0], notes[1], notes[3], notes[4], notes[6])
	res = d.serialize(ctx)
	if res.Failed != 0 || res.Updated != 2 || d.count(`SELECT count(*) FROM morango_dirty`) != 0 {
		t.Fatalf("after the fix: %+v, want the 2 changed ones updated (the others are back to their recorded data)", res)
	}
}
