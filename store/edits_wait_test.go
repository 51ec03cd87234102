package store

import (
	"context"
	"strings"
	"testing"

	"github.com/morango-sync/morango/merge"
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

// An incoming version of a note waits (the store row is dirty: it has not
// reached the app) while the app, still showing the note before it, edits
// it. The new version must not supersede the waiting one, which the user
// never saw: the record holds both, the head chosen by the order (here
// the greater counter), the other as a sibling, and the history has the
// new version. When the waiting version stays the head, the row stays
// dirty and the next deserialization writes it into the app.
func TestEditOfRowWhoseIncomingVersionWaits(t *testing.T) {
	other := strings.Repeat("e", 32)
	for _, tc := range []struct {
		name    string
		counter int64 // the waiting version's
		kept    bool  // whether it stays the head
	}{
		{"waiting version stays head", 1000, true},
		{"edit becomes head", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := seedKept(t, ctx)
			theirs := `{"id":"` + note1ID + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"theirs"}`
			d.exec(`UPDATE morango_store SET serialized = ?, last_saved_instance = ?, last_saved_counter = ?, dirty_bit = 1,
				deserialization_error = 'waits' WHERE id = ?`, theirs, other, tc.counter, note1ID)
			d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, ?)`, note1ID, other, tc.counter)
			d.exec(`UPDATE note SET body = 'mine' WHERE id = ?`, note1ID)
			res := d.serialize(ctx)
			if res.Updated != 1 {
				t.Fatalf("serialize: %+v, want one new version", res)
			}
			r := d.storeRow(note1ID)
			sib, err := merge.DecodeSiblings(r.Conflicting)
			if err != nil || len(sib) != 1 {
				t.Fatalf("siblings %q: %v, want one", r.Conflicting, err)
			}
			head := merge.Version{Instance: r.LSI, Counter: r.LSC, Serialized: r.Serialized}
			waiting := merge.Version{Instance: other, Counter: tc.counter, Serialized: theirs}
			mine, waitingHead := sib[0], head
			if !tc.kept {
				mine, waitingHead = head, sib[0]
			}
			if waitingHead != waiting || mine.Instance == other || mine.Counter != res.Counter || !strings.Contains(mine.Serialized, `"body":"mine"`) {
				t.Fatalf("record holds head %+v and sibling %+v, want the waiting version %+v and the edit", head, sib[0], waiting)
			}
			if h := d.history(note1ID); h[other] != tc.counter || h[mine.Instance] != res.Counter {
				t.Errorf("history %v lacks a version", h)
			}
			if r.Dirty != tc.kept {
				t.Errorf("dirty %v, want %v", r.Dirty, tc.kept)
			}
			var logged int64
			d.app.QueryRow(`SELECT count(*) FROM morango_conflictlog WHERE record_id = ?`, note1ID).Scan(&logged)
			if want := map[bool]int64{true: 0, false: 1}[tc.kept]; logged != want {
				t.Errorf("%d displaced heads logged, want %d", logged, want)
			}
			if _, err := d.db.Deserialize(ctx); err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{true: "theirs", false: "mine"}[tc.kept]
			if n := d.count(`SELECT count(*) FROM note WHERE id = ? AND body = ?`, note1ID, want); n != 1 {
				t.Errorf("the app does not show %q", want)
			}
			if r := d.storeRow(note1ID); r.Dirty {
				t.Errorf("still dirty after deserialization: %+v", r)
			}
		})
	}
}
