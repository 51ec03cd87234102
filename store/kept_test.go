package store

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// seedKept writes a dataset, alice and her note in the app and serializes
// them.
func seedKept(t *testing.T, ctx context.Context) *device {
	d := newDevice(t, "k")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Alice')`, aliceID, dsID)
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'hello')`, note1ID, dsID, aliceID)
	d.serialize(ctx)
	return d
}

// The cascade to a note the app keeps, whose deleted parent the app keeps
// too: the note waits (its parent's row being in the app must not make it
// ready to write), and once the app lets both go, the retry deletes both
// and records the note's deletion.
func TestKeptChildOfKeptParent(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER person_kept BEFORE DELETE ON person BEGIN SELECT RAISE(ABORT, 'people are kept'); END`)
	d.exec(`CREATE TRIGGER note_kept BEFORE DELETE ON note BEGIN SELECT RAISE(ABORT, 'notes are kept'); END`)
	p := dsID + ":user-rw:" + aliceID
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`"}`, true)
	d.putRecord(note1ID, "note", p, `{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"edited"}`, false)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if r := d.storeRow(note1ID); !r.Dirty || !strings.Contains(r.Error, "notes are kept") {
		t.Errorf("the kept note does not wait: %+v", r)
	}
	d.exec(`DROP TRIGGER person_kept`)
	d.exec(`DROP TRIGGER note_kept`)
	if _, _, err := d.db.RetryPending(ctx); err != nil {
		t.Fatal(err)
	}
	d.serialize(ctx)
	if n := d.count(`SELECT count(*) FROM person`); n != 0 {
		t.Errorf("person still in the app")
	}
	if n := d.count(`SELECT count(*) FROM note`); n != 0 || !d.storeRow(note1ID).Deleted {
		t.Errorf("the note of the deleted person: %d in the app, record %+v", n, d.storeRow(note1ID))
	}
}

// RAISE(IGNORE) keeps the row without an error: the record must wait, with
// a reason, like a refused deletion, not be counted as deleted.
func TestRaiseIgnoreKeptRowWaits(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER note_kept BEFORE DELETE ON note BEGIN SELECT RAISE(IGNORE); END`)
	d.putRecord(note1ID, "note", dsID+":user-rw:"+aliceID, `{"id":"`+note1ID+`"}`, true)
	res, err := d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM note WHERE id = ?`, note1ID); n != 1 {
		t.Fatalf("%d rows of the note in the app: RAISE(IGNORE) keeps it", n)
	}
	if r := d.storeRow(note1ID); !r.Dirty || !strings.Contains(r.Error, "ignored its deletion") || res.Deleted != 0 {
		t.Errorf("the app kept the row (RAISE(IGNORE)), yet the record does not wait: %+v, result %+v", r, res)
	}
}

// RAISE(IGNORE) in a trigger of the app's skips the engine's write of a
// row without an error, inserted or updated: the record must wait with a
// reason, not be counted as written, while the other rows of the batch are
// written. Alice's edit of her note (a separator in dataset_id) waits to
// become a version; it must stay on the list of changes, not be dropped as
// if the incoming version had replaced it. Once the app lets the write
// through, the edit it replaces is logged.
func TestRaiseIgnoreKeptWriteWaits(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`UPDATE note SET dataset_id = dataset_id || ':x' WHERE id = ?`, note1ID)
	if res := d.serialize(ctx); res.Failed != 1 {
		t.Fatalf("edit: %+v, want it to wait", res)
	}
	d.exec(`CREATE TRIGGER note_open BEFORE UPDATE ON note WHEN EXISTS (SELECT 1 FROM morango_applying)
		BEGIN SELECT RAISE(IGNORE); END`)
	d.exec(`CREATE TRIGGER note_new BEFORE INSERT ON note WHEN EXISTS (SELECT 1 FROM morango_applying) AND NEW.body = 'ignored'
		BEGIN SELECT RAISE(IGNORE); END`)
	p := dsID + ":user-rw:" + aliceID
	note := func(id, body string) string {
		return `{"id":"` + id + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"` + body + `"}`
	}
	third := "3" + note1ID[1:]
	d.putRecord(note1ID, "note", p, note(note1ID, "theirs"), false)
	d.putRecord(note2ID, "note", p, note(note2ID, "ignored"), false)
	d.putRecord(third, "note", p, note(third, "written"), false)
	res, err := d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 1 || res.Pending != 2 {
		t.Errorf("deserialize: %+v, want 1 written and 2 pending", res)
	}
	for _, id := range []string{note1ID, note2ID} {
		if r := d.storeRow(id); !r.Dirty || !strings.Contains(r.Error, "ignored the write") {
			t.Errorf("the app ignored the write of %s, yet the record does not wait: %+v", id, r)
		}
	}
	if n := d.count(`SELECT count(*) FROM note WHERE id = ? AND body = 'written'`, third); n != 1 {
		t.Errorf("the note the app took is not in the app")
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty WHERE id = ? AND error <> ''`, note1ID); n != 1 {
		t.Errorf("Alice's waiting edit was dropped though the app kept it")
	}

	d.exec(`DROP TRIGGER note_open`)
	d.exec(`DROP TRIGGER note_new`)
	if res, err := d.db.Deserialize(ctx); err != nil || res.Pending != 0 {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if n := d.count(`SELECT count(*) FROM note WHERE body IN ('theirs', 'ignored')`); n != 2 {
		t.Errorf("%d of the 2 notes in the app after the retry", n)
	}
	if n := d.count(`SELECT count(*) FROM morango_conflictlog WHERE record_id = ? AND serialized LIKE '%:x%'`, note1ID); n != 1 {
		t.Errorf("Alice's edit that the incoming version replaced is not logged")
	}
}

// RAISE(FAIL) is handled like RAISE(ABORT).
func TestRaiseFail(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`INSERT INTO note (id, dataset_id, person_id, body) VALUES (?, ?, ?, 'two')`, note2ID, dsID, aliceID)
	d.serialize(ctx)
	d.exec(`CREATE TRIGGER note_kept BEFORE DELETE ON note WHEN OLD.id = '` + note2ID + `' BEGIN SELECT RAISE(FAIL, 'kept'); END`)
	d.putRecord(note1ID, "note", dsID+":user-rw:"+aliceID, `{"id":"`+note1ID+`"}`, true)
	d.putRecord(note2ID, "note", dsID+":user-rw:"+aliceID, `{"id":"`+note2ID+`"}`, true)
	if _, err := d.db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.count(`SELECT count(*) FROM note`); n != 1 {
		t.Errorf("%d notes in the app, want 1", n)
	}
	if r := d.storeRow(note2ID); !r.Dirty || !strings.Contains(r.Error, "kept") {
		t.Errorf("kept note: %+v", r)
	}
	if r := d.storeRow(note1ID); r.Dirty || r.Error != "" {
		t.Errorf("deleted note: %+v", r)
	}
}

// Self-reference: a kept note whose person is deleted; its reply (another
// person's) stays and is written; no loop.
func TestKeptSelfRef(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Bob')`, bobID, dsID)
	d.exec(`INSERT INTO note (id, dataset_id, person_id, parent_id, body) VALUES (?, ?, ?, ?, 'reply')`, note2ID, dsID, bobID, note1ID)
	d.serialize(ctx)
	d.exec(`CREATE TRIGGER note_kept BEFORE DELETE ON note BEGIN SELECT RAISE(ABORT, 'notes are kept'); END`)
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`"}`, true)
	d.putRecord(note1ID, "note", dsID+":user-rw:"+aliceID, `{"id":"`+note1ID+`","dataset_id":"`+dsID+`","person_id":"`+aliceID+`","parent_id":null,"body":"x"}`, false)
	d.putRecord(note2ID, "note", dsID+":user-rw:"+bobID, `{"id":"`+note2ID+`","dataset_id":"`+dsID+`","person_id":"`+bobID+`","parent_id":"`+note1ID+`","body":"y"}`, false)
	res, err := d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.storeRow(note1ID); !r.Dirty || !strings.Contains(r.Error, "notes are kept") {
		t.Errorf("kept note: %+v (%+v)", r, res)
	}
	if r := d.storeRow(note2ID); r.Dirty || d.count(`SELECT count(*) FROM note WHERE id = ? AND body = 'y'`, note2ID) != 1 {
		t.Errorf("the reply to the kept note: %+v", r)
	}
}

// An error that is not the app's refusal, such as a full disk (an app's
// audit trigger needing a new page), ends the deserialization: no row is
// taken for one the app keeps.
func TestDiskFullIsNoRefusal(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TABLE audit (id TEXT, data BLOB)`)
	d.exec(`CREATE TRIGGER note_audit AFTER DELETE ON note BEGIN INSERT INTO audit VALUES (OLD.id, zeroblob(200000)); END`)
	d.putRecord(note1ID, "note", dsID+":user-rw:"+aliceID, `{"id":"`+note1ID+`"}`, true)
	if _, err := d.db.w.ExecContext(ctx, `PRAGMA max_page_count = 1`); err != nil {
		t.Fatal(err)
	}
	_, err := d.db.Deserialize(ctx)
	if err == nil {
		t.Errorf("a full disk was taken for the app's refusal: %+v", d.storeRow(note1ID))
	}
}

// One note the app refuses for good waits; every later batch of notes is
// still written in one statement, and only the refused note is tried row
// by row: the first refusal of a batch used to send all its rows one by
// one, at every import.
func TestRefusedRowDoesNotSplitLaterBatches(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	d.exec(`CREATE TRIGGER note_out BEFORE INSERT ON note WHEN NEW.id = '` + note2ID + `' AND EXISTS (SELECT 1 FROM morango_applying)
		BEGIN SELECT RAISE(ABORT, 'kept out'); END`)
	p := dsID + ":user-rw:" + aliceID
	note := func(id string) string {
		return `{"id":"` + id + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"x"}`
	}
	d.putRecord(note2ID, "note", p, note(note2ID), false)
	if res, err := d.db.Deserialize(ctx); err != nil || res.Pending != 1 {
		t.Fatalf("the refused note does not wait: %+v %v", res, err)
	}
	var rows []int64
	d.db.log = slog.New(handlerFunc(func(r slog.Record) {
		if r.Message == "batch refused, writing rows one by one" {
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "rows" {
					rows = append(rows, a.Value.Int64())
				}
				return true
			})
		}
	}))
	for i := range 5 {
		id := fmt.Sprintf("%d%s", 3+i, note1ID[1:])
		d.putRecord(id, "note", p, note(id), false)
	}
	res, err := d.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 5 || res.Pending != 1 {
		t.Errorf("deserialize: %+v, want 5 written and the refused note pending", res)
	}
	// Notes reply to notes: a second wave tries the refused note again.
	if len(rows) == 0 || slices.ContainsFunc(rows, func(n int64) bool { return n != 1 }) {
		t.Errorf("rows written one by one, by pass: %v, want only the refused note each time", rows)
	}
}

// handlerFunc is a slog handler that hands every record to a function.
type handlerFunc func(slog.Record)

func (h handlerFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (h handlerFunc) Handle(_ context.Context, r slog.Record) error { h(r); return nil }
func (h handlerFunc) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h handlerFunc) WithGroup(string) slog.Handler                 { return h }
