package store

import (
	"context"
	"testing"
)

// SQLite finds a table whatever the case its name is written in, and a
// trigger's tbl_name keeps the spelling of its CREATE TRIGGER: an app
// trigger declared ON PERSON is a trigger on the synced table person,
// and the welcome note it writes while the engine writes a person is the
// app's change.
func TestAppTriggerNamedInOtherCaseIsSeen(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER welcome AFTER INSERT ON PERSON BEGIN
		INSERT INTO note (id, dataset_id, person_id, body) VALUES (lower(hex(randomblob(16))), NEW.dataset_id, NEW.id, 'welcome'); END`)
	d.putRecord(bobID, "person", dsID+":user-ro:"+bobID, `{"id":"`+bobID+`","dataset_id":"`+dsID+`","name":"Bob"}`, false)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	d.serialize(ctx)
	if n := d.count(`SELECT count(*) FROM note WHERE body = 'welcome'`); n != 1 {
		t.Fatalf("%d welcome notes in the app, want 1", n)
	}
	if n := d.count(`SELECT count(*) FROM note WHERE body = 'welcome' AND id NOT IN (SELECT id FROM morango_store)`); n != 0 {
		t.Errorf("%d notes the app wrote are not in the store", n)
	}
}
