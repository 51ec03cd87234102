package store

import (
	"context"
	"strings"
	"testing"
)

// An app may skip updates that change nothing with RAISE(IGNORE) (so as
// not to touch a modified-at column, say). A record whose data the app row
// already shows (two devices made the same edit) is then "ignored" by the
// app, yet the app shows it: it must count as written, not wait forever,
// retried one row at a time by every import, and hold the app's next edit
// of the row beside a head that never reaches the app.
func TestIgnoredWriteOfDataTheAppShows(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER note_same BEFORE UPDATE ON note
		WHEN NEW.dataset_id IS OLD.dataset_id AND NEW.person_id IS OLD.person_id
			AND NEW.parent_id IS OLD.parent_id AND NEW.body IS OLD.body
		BEGIN SELECT RAISE(IGNORE); END`)
	d.putRecord(note1ID, "note", dsID+":user-rw:"+aliceID,
		`{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"hello"}`, false)
	// Another device's version, with the data the app shows.
	d.exec(`UPDATE morango_store SET last_saved_instance = ? WHERE id = ?`, strings.Repeat("e", 32), note1ID)
	res, err := d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.storeRow(note1ID); r.Dirty || r.Error != "" || res.Pending != 0 {
		t.Fatalf("the app shows the record's data, yet it waits: %+v, result %+v", r, res)
	}
	d.exec(`UPDATE note SET body = 'edited' WHERE id = ?`, note1ID)
	d.serialize(ctx)
	if r := d.storeRow(note1ID); r.Conflicting != "" || r.Dirty {
		t.Errorf("the app's edit made a conflict with a version the app showed: %+v", r)
	}
}
