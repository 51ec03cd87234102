package store

import (
	"context"
	"strings"
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
	welcomeSynced(t, ctx, d)
}

// The app marks a person as a writer when a note of hers is inserted (its
// own trigger on note, which changes another row). A note written by the
// engine makes that change as an edit in the app would, and it must be
// synced whether or not the person's record came in the same
// deserialization: the engine wrote the person's row in an earlier
// statement, and the change is the app's, not part of that write. Were it
// not synced, this device would show a nickname no record holds, and no
// other device would ever show it.
func TestAppTriggerChangeOfRowTheEngineWroteEarlierIsSynced(t *testing.T) {
	ctx := context.Background()
	for _, renamed := range []bool{false, true} {
		d := seedKept(t, ctx)
		d.exec(`CREATE TRIGGER writer AFTER INSERT ON note BEGIN
			UPDATE person SET nickname = 'writer' WHERE id = NEW.person_id AND nickname IS NOT 'writer'; END`)
		if renamed {
			d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`","dataset_id":"`+dsID+`","name":"Alicia","nickname":"none"}`, false)
		}
		d.putRecord(note2ID, "note", dsID+":user-rw:"+aliceID,
			`{"id":"`+note2ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":"`+note1ID+`","body":"reply"}`, false)
		if _, err := d.db.Deserialize(ctx); err != nil {
			t.Fatal(err)
		}
		if n := d.count(`SELECT count(*) FROM person WHERE id = ? AND nickname = 'writer'`, aliceID); n != 1 {
			t.Fatalf("renamed %v: the app does not show the nickname its trigger set", renamed)
		}
		d.serialize(ctx)
		if r := d.storeRow(aliceID); r == nil || !strings.Contains(r.Serialized, `"nickname":"writer"`) {
			t.Errorf("renamed %v: the app shows the nickname its trigger set, the record does not: %+v", renamed, r)
		}
	}
}

// The same when the reply comes in the batch that edits the note it
// answers: the app's trigger on the reply's insert changes the note the
// engine's previous statement updated.
func TestAppTriggerChangeOfRowUpdatedInTheSameBatchIsSynced(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER answered AFTER INSERT ON note WHEN NEW.parent_id IS NOT NULL BEGIN
		UPDATE note SET body = body || ' [answered]' WHERE id = NEW.parent_id AND body NOT LIKE '%[answered]'; END`)
	p := dsID + ":user-rw:" + aliceID
	d.putRecord(note1ID, "note", p, `{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"hello again"}`, false)
	d.putRecord(note2ID, "note", p, `{"id":"`+note2ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":"`+note1ID+`","body":"reply"}`, false)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM note WHERE id = ? AND body = 'hello again [answered]'`, note1ID); n != 1 {
		t.Fatalf("the app does not show the mark its trigger set")
	}
	d.serialize(ctx)
	if r := d.storeRow(note1ID); r == nil || !strings.Contains(r.Serialized, `[answered]`) {
		t.Errorf("the app shows the mark its trigger set, the record does not: %+v", r)
	}
}

// A note's edit waits (a separator in its dataset_id: it cannot become a
// version). The app stamps a person's notes when the person changes (a
// trigger of its own). Another device renames the person and edits the
// note: the engine writes the person, the app's trigger touches the note,
// and then the engine writes the note's incoming version over the edit
// that waited. That edit never reaches another device: like any waiting
// edit an incoming version replaces, it must be kept in the conflict log,
// not vanish because an app trigger touched the row first.
func TestAppTriggerTouchingAWaitingEditKeepsItLogged(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`UPDATE note SET dataset_id = dataset_id || ':x' WHERE id = ?`, note1ID)
	if res := d.serialize(ctx); res.Failed != 1 {
		t.Fatalf("edit: %+v, want it to wait", res)
	}
	d.exec(`CREATE TRIGGER stamp AFTER UPDATE OF name ON person BEGIN
		UPDATE note SET body = body || '.' WHERE person_id = NEW.id; END`)
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`","dataset_id":"`+dsID+`","name":"Alicia"}`, false)
	d.putRecord(note1ID, "note", dsID+":user-rw:"+aliceID, `{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"theirs"}`, false)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM note WHERE id = ? AND body = 'theirs'`, note1ID); n != 1 {
		t.Fatalf("the app does not show the incoming version of the note")
	}
	if n := d.count(`SELECT count(*) FROM morango_conflictlog WHERE record_id = ? AND serialized LIKE '%:x%'`, note1ID); n != 1 {
		t.Errorf("the waiting edit the incoming version replaced is not logged")
	}
}

// An app trigger whose name begins with "morango_" is still the app's:
// only the change-tracking triggers that init installs are the engine's.
func TestAppTriggerWithMorangoLikeNameIsSeen(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER morango_welcome AFTER INSERT ON person BEGIN
		INSERT INTO note (id, dataset_id, person_id, body) VALUES (lower(hex(randomblob(16))), NEW.dataset_id, NEW.id, 'welcome'); END`)
	welcomeSynced(t, ctx, d)
}
