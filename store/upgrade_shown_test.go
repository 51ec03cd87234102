package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// Schema 6 noted what the app showed of a waiting record only once: a note
// outlived the row when the row later left the app (its parent deleted, as
// in TestWaitingChildLeavingAppShowsNoRow). Version 7 notes what the app
// shows of waiting records as a deserialization does now, the note of a
// row that left the app included: the app writing the row back as it was
// is a change of its own, and must become a version.
func TestUpgradeRenewsStaleNote(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	other := strings.Repeat("e", 32)
	theirs := `{"id":"` + note1ID + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"theirs"}`
	d.exec(`UPDATE morango_store SET serialized = ?, last_saved_instance = ?, last_saved_counter = 1, dirty_bit = 1,
		deserialization_error = 'waits' WHERE id = ?`, theirs, other, note1ID)
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 1)`, note1ID, other)
	// The note schema 6 made of the row, which then left the app by the
	// engine's hand.
	d.exec(`INSERT INTO morango_shown (id, serialized) SELECT id, json_object('id', id, 'dataset_id', dataset_id,
		'person_id', person_id, 'parent_id', parent_id, 'body', body) FROM note WHERE id = ?
		ON CONFLICT (id) DO UPDATE SET serialized = excluded.serialized`, note1ID)
	d.exec(`INSERT INTO morango_applying (active) VALUES (1)`)
	d.exec(`DELETE FROM note WHERE id = ?`, note1ID)
	d.exec(`DELETE FROM morango_applying`)
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

	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'hello')`, note1ID, dsID, aliceID)
	if res := d.serialize(ctx); res.Versions() != 1 {
		t.Errorf("the app wrote the note back: %d versions, want 1 (%+v)", res.Versions(), res)
	}
}
