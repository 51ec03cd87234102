package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/morango-sync/morango/merge"
)

// A note whose store record holds a live head and 1000 tombstones (the
// most siblings a record may hold) has an incoming head that waits to
// reach the app, and the app edits the note. Keeping the waiting head
// beside the edit would make 1001 siblings, which no record may hold: the
// edit supersedes it, as any edit would, and it is kept on this device in
// morango_conflictlog. Serialization goes on.
func TestEditOfWaitingRowAtSiblingLimit(t *testing.T) {
	ctx := context.Background()
	d := noteWaitingAtLimit(t, ctx)
	d.exec(`UPDATE note SET body = 'mine' WHERE id = ?`, note1ID)
	d.exec(`UPDATE person SET name = 'Alicia' WHERE id = ?`, aliceID)
	res, err := d.db.Serialize(ctx)
	if err != nil {
		t.Fatalf("serialize failed as a whole (Alicia's rename is not recorded either): %v", err)
	}
	if n := d.count(`SELECT count(*) FROM morango_store WHERE id = ? AND serialized LIKE '%Alicia%'`, aliceID); n != 1 {
		t.Errorf("the rename of an unrelated row was not recorded: %+v", res)
	}
	if n := d.count(`SELECT count(*) FROM morango_conflictlog WHERE record_id = ? AND serialized LIKE '%theirs%'`, note1ID); n != 1 {
		t.Errorf("the waiting head superseded by the edit is not kept in the conflict log (%d)", n)
	}
}

// noteWaitingAtLimit is seedKept's device where note 1's record holds an
// incoming head ("theirs") that waits to reach the app, and 1000
// tombstones, the most siblings a record may hold.
func noteWaitingAtLimit(t *testing.T, ctx context.Context) *device {
	t.Helper()
	d := seedKept(t, ctx)
	other := strings.Repeat("e", 32)
	theirs := `{"id":"` + note1ID + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"theirs"}`
	var tombs []merge.Version
	for i := range 1000 {
		tombs = append(tombs, merge.Version{Instance: fmt.Sprintf("%032x", i+1), Counter: 1, Serialized: "{}", Deleted: true, HardDeleted: true})
	}
	d.exec(`UPDATE morango_store SET serialized = ?, last_saved_instance = ?, last_saved_counter = 5, dirty_bit = 1,
		deserialization_error = 'waits', conflicting_serialized_data = ? WHERE id = ?`, theirs, other, merge.EncodeSiblings(tombs), note1ID)
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 5)`, note1ID, other)
	for _, v := range tombs {
		d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 1)`, note1ID, v.Instance)
	}
	return d
}

// The same when the app deletes the note instead (deletedWaiting).
func TestDeleteOfWaitingRowAtSiblingLimit(t *testing.T) {
	ctx := context.Background()
	d := noteWaitingAtLimit(t, ctx)
	d.exec(`DELETE FROM note WHERE id = ?`, note1ID)
	d.exec(`UPDATE person SET name = 'Alicia' WHERE id = ?`, aliceID)
	if _, err := d.db.Serialize(ctx); err != nil {
		t.Fatalf("serialize failed as a whole (Alicia's rename is not recorded either): %v", err)
	}
	if r := d.storeRow(note1ID); !r.Deleted {
		t.Errorf("the deletion was not recorded: %+v", r)
	}
	if n := d.count(`SELECT count(*) FROM morango_conflictlog WHERE record_id = ? AND serialized LIKE '%theirs%'`, note1ID); n != 1 {
		t.Errorf("the waiting head superseded by the deletion is not kept in the conflict log (%d)", n)
	}
}

// An incoming note of 9 MiB whose body is all quotes waits to reach the
// app, and the app edits the note (the edit wins: greater counter). As a
// sibling, escaped for the siblings' text, each quote would take four
// bytes: about 18 MiB, more than a record's siblings may hold (16 MiB),
// and the record could no longer be read back. The edit supersedes the
// waiting head instead (kept in morango_conflictlog), and later imports of
// the record work.
func TestEditOfWaitingRowTooLargeToKeepBeside(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	other := strings.Repeat("e", 32)
	body := strings.Repeat(`\"`, 9<<20/2)
	theirs := `{"id":"` + note1ID + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"` + body + `"}`
	d.exec(`UPDATE morango_store SET serialized = ?, last_saved_instance = ?, last_saved_counter = 1, dirty_bit = 1,
		deserialization_error = 'waits' WHERE id = ?`, theirs, other, note1ID)
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 1)`, note1ID, other)
	d.exec(`UPDATE note SET body = 'mine' WHERE id = ?`, note1ID)
	if _, err := d.db.Serialize(ctx); err != nil {
		t.Fatal(err)
	}
	r := d.storeRow(note1ID)
	if n := d.count(`SELECT count(*) FROM morango_conflictlog WHERE record_id = ?`, note1ID); n != 1 {
		t.Errorf("the waiting head superseded by the edit is not kept in the conflict log (%d)", n)
	}
	if _, err := merge.DecodeSiblings(r.Conflicting); err != nil {
		t.Errorf("the record's stored siblings (%d bytes) cannot be read back: %v", len(r.Conflicting), err)
	}
	// An import that brings a version of the note merges it.
	im, err := d.db.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	in := &Record{ID: note1ID, Profile: "testdata", ModelName: "note", Partition: dsID + ":user-rw:" + aliceID,
		Serialized:        `{"id":"` + note1ID + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"x"}`,
		LastSavedInstance: strings.Repeat("f", 32), LastSavedCounter: 1, History: []HistoryEntry{{Instance: strings.Repeat("f", 32), Counter: 1}}}
	if err := im.Add(ctx, []*Record{in}); err != nil {
		t.Errorf("an import bringing a version of the note fails as a whole: %v", err)
	}
}

// An incoming version of Alice (renamed on another device) waits to reach
// the app (the app refuses the engine's write for a while), and the app
// touches her row without changing any synced column (local_pref is
// excluded from sync). A touch that changes no synced data makes no
// version: the serializer compares the row with what the app showed when
// the version began to wait (morango_shown), not with the waiting head,
// whose name differs. An edit of a synced column still makes one.
func TestTouchOfWaitingRowMakesNoVersion(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	other := strings.Repeat("e", 32)
	theirs := `{"id":"` + aliceID + `","dataset_id":"` + dsID + `","name":"Alicia","nickname":"none"}`
	d.exec(`UPDATE morango_store SET serialized = ?, last_saved_instance = ?, last_saved_counter = 1, dirty_bit = 1,
		deserialization_error = '' WHERE id = ?`, theirs, other, aliceID)
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 1)`, aliceID, other)
	d.exec(`CREATE TRIGGER busy BEFORE UPDATE ON person WHEN EXISTS (SELECT 1 FROM morango_applying)
		BEGIN SELECT RAISE(ABORT, 'the row is open'); END`)
	if r, err := d.db.Deserialize(ctx); err != nil || r.Pending != 1 {
		t.Fatalf("the rename does not wait: %+v %v", r, err)
	}
	d.exec(`DROP TRIGGER busy`)
	d.exec(`UPDATE person SET local_pref = 'dark' WHERE id = ?`, aliceID)
	res := d.serialize(ctx)
	r := d.storeRow(aliceID)
	if res.Versions() != 0 {
		t.Errorf("a touch of unsynced data made %d versions: %+v; record now %+v", res.Versions(), res, r)
	}
	if !strings.Contains(r.Serialized, "Alicia") || r.Conflicting != "" {
		t.Errorf("the rename is no longer the head alone: %+v", r)
	}
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM person WHERE id = ? AND name = 'Alicia' AND local_pref = 'dark'`, aliceID); n != 1 {
		t.Errorf("the app does not show the rename with its own preference")
	}
	if n := d.count(`SELECT count(*) FROM morango_shown`); n != 0 {
		t.Errorf("%d rows of morango_shown left once the rename reached the app", n)
	}
	// A real edit after a new version waits again makes one.
	d.exec(`UPDATE morango_store SET serialized = replace(serialized, 'Alicia', 'Ali'), last_saved_counter = 2, dirty_bit = 1 WHERE id = ?`, aliceID)
	d.exec(`UPDATE morango_recordmaxcounter SET counter = 2 WHERE store_model_id = ? AND instance_id = ?`, aliceID, other)
	d.exec(`CREATE TRIGGER busy BEFORE UPDATE ON person WHEN EXISTS (SELECT 1 FROM morango_applying)
		BEGIN SELECT RAISE(ABORT, 'the row is open'); END`)
	if r, err := d.db.Deserialize(ctx); err != nil || r.Pending != 1 {
		t.Fatalf("the second rename does not wait: %+v %v", r, err)
	}
	d.exec(`DROP TRIGGER busy`)
	d.exec(`UPDATE person SET nickname = 'al' WHERE id = ?`, aliceID)
	if res := d.serialize(ctx); res.Versions() != 1 {
		t.Errorf("an edit of a waiting row made %d versions, want 1", res.Versions())
	}
	if r := d.storeRow(aliceID); !strings.Contains(r.Serialized+r.Conflicting, "Ali\\\"") && !strings.Contains(r.Serialized+r.Conflicting, `"Ali"`) {
		t.Errorf("the waiting rename is lost: %+v", r)
	}
}

// A database that took schema version 6 while Alice's rename waited to
// reach the app has no note of what the app shows of her (morango_shown
// came with version 6). Version 7 notes it from the app's row, as a
// deserialization does, so that a touch of her row still makes no
// version.
func TestUpgradeNotesWaitingRows(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	other := strings.Repeat("e", 32)
	theirs := `{"id":"` + aliceID + `","dataset_id":"` + dsID + `","name":"Alicia","nickname":"none"}`
	d.exec(`UPDATE morango_store SET serialized = ?, last_saved_instance = ?, last_saved_counter = 1, dirty_bit = 1,
		deserialization_error = 'the row is open' WHERE id = ?`, theirs, other, aliceID)
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 1)`, aliceID, other)
	// The sync tables as version 6 left them: no note.
	d.exec(`DELETE FROM morango_shown`)
	d.exec(`UPDATE morango_schema SET version = 6`)
	if err := d.db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, d.path, &Options{SystemID: "sys-" + filepath.Base(d.path), NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	d.db = db
	t.Cleanup(func() { db.Close() })
	if v := d.count(`SELECT version FROM morango_schema`); v != currentSchemaVersion {
		t.Fatalf("schema version %d after opening, want %d", v, currentSchemaVersion)
	}
	d.exec(`UPDATE person SET local_pref = 'dark' WHERE id = ?`, aliceID)
	if res := d.serialize(ctx); res.Versions() != 0 {
		t.Errorf("a touch of unsynced data made %d versions: %+v", res.Versions(), res)
	}
	if r := d.storeRow(aliceID); !strings.Contains(r.Serialized, "Alicia") || r.Conflicting != "" {
		t.Errorf("the rename is no longer the head alone: %+v", r)
	}
}
