package store

import (
	"context"
	"testing"
)

// The app's own AFTER trigger writes a row of a synced table when the
// engine writes another one: a welcome note for each new person. The
// note is the app's, made on this device, and must be serialized like any
// row the app writes; the change-tracking triggers, switched off while
// the engine writes (morango_applying), never listed it, so it never
// became a record and never left the device.
func TestAppTriggerRowWrittenDuringDeserializationIsSynced(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER welcome AFTER INSERT ON person BEGIN
		INSERT INTO note (id, dataset_id, person_id, body) VALUES (lower(hex(randomblob(16))), NEW.dataset_id, NEW.id, 'welcome'); END`)
	welcomeSynced(t, ctx, d)
	if n := d.count(`SELECT count(*) FROM sqlite_temp_master WHERE type = 'trigger'`); n != 0 {
		t.Errorf("%d temporary triggers left after the deserialization", n)
	}
}

// The app deletes a person's notes with her (its own AFTER DELETE
// trigger). When the engine deletes the person (another device deleted
// her), the notes that go with her are the app's deletions: they must be
// recorded, or this device would keep live records of notes its app no
// longer has, and the other devices keep the notes.
func TestAppTriggerCascadeDuringDeserializationIsSynced(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER notes_go AFTER DELETE ON person BEGIN DELETE FROM note WHERE person_id = OLD.id; END`)
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`"}`, true)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM note`); n != 0 {
		t.Fatalf("the app kept %d notes of the deleted person", n)
	}
	if res := d.serialize(ctx); res.Deleted != 1 {
		t.Errorf("serialize: %+v, want the note's deletion", res)
	}
	if r := d.storeRow(note1ID); r == nil || !r.Deleted {
		t.Errorf("the note the app deleted is live in the store: %+v", r)
	}
}

// A trigger that changes the very row the engine writes (a stamp on the
// row itself) does not make a version: every device that received the
// record would make one for ever. The row the engine writes is the
// engine's.
func TestAppTriggerOnTheWrittenRowMakesNoVersion(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER seen AFTER UPDATE ON person WHEN NEW.nickname IS NOT 'seen' BEGIN
		UPDATE person SET nickname = 'seen' WHERE id = NEW.id; END`)
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`","dataset_id":"`+dsID+`","name":"Alicia"}`, false)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM person WHERE name = 'Alicia' AND nickname = 'seen'`); n != 1 {
		t.Fatalf("the app does not show the rename with its stamp")
	}
	if res := d.serialize(ctx); res.Versions() != 0 {
		t.Errorf("the app's stamp on the row the engine wrote made %d versions: %+v", res.Versions(), res)
	}
}

// The same when the app lists the person for erasure (a hard deletion,
// in morango_harddeletedmodels) and serialization deletes her row: the
// notes the app's trigger deletes with her are the app's deletions.
func TestAppTriggerCascadeOfHardDeletionIsSynced(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER notes_go AFTER DELETE ON person BEGIN DELETE FROM note WHERE person_id = OLD.id; END`)
	d.exec(`INSERT INTO morango_harddeletedmodels (id, profile) VALUES (?, 'testdata')`, aliceID)
	d.serialize(ctx)
	if n := d.count(`SELECT count(*) FROM note`); n != 0 {
		t.Fatalf("the app kept %d notes of the erased person", n)
	}
	if r := d.storeRow(aliceID); r == nil || !r.HardDeleted {
		t.Fatalf("the person is not erased: %+v", r)
	}
	d.serialize(ctx)
	if r := d.storeRow(note1ID); r == nil || !r.Deleted {
		t.Errorf("the note the app deleted is live in the store: %+v", r)
	}
}

// welcomeSynced has the engine write Bob, whom another device made, on a
// device whose app writes a welcome note for each new person by a trigger
// of its own, and checks that the note the app wrote became a record.
func welcomeSynced(t *testing.T, ctx context.Context, d *device) {
	t.Helper()
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
