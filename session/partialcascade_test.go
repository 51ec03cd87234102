package session

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// lessonTable and lessonModel add to the test app a lesson of a classroom,
// shared read-only data: every learner's device may read it, none write
// it.
const (
	lessonTable = `CREATE TABLE lesson (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, classroom_id TEXT NOT NULL, title TEXT NOT NULL);`
	lessonModel = `{"name": "lesson", "table": "lesson", "partition": "${dataset_id}:allusers-ro", "foreign_keys": {"classroom_id": "classroom"}},`
)

// A classroom is deleted on Facility while its app keeps the classroom's
// lesson, shared read-only data. A learner's tablet receives both: the
// lesson, whose parent is deleted, leaves the tablet's app, but the tablet
// may not write the lesson's partition, so it must not record a deletion
// of its own (one that could never leave it, and would win over every later
// edit): the lesson waits, and the stores of both devices stay the same.
func TestPartialScopeKeepsOthersRecords(t *testing.T) {
	const schema, models = lessonTable, lessonModel
	dir := t.TempDir()
	send := func(from, to *device) {
		t.Helper()
		if _, r := from.sendTo(to, dir, false); r.Store.Refused != 0 {
			t.Fatalf("%s refused %+v", to.name, r.Store.Refusals)
		}
	}
	fac := newAppDevice(t, "facility", schema, models)
	fac.root()
	f := seedFacility(fac)
	lesson := ids.Random()
	fac.exec(`INSERT INTO lesson (id, dataset_id, classroom_id, title) VALUES (?, ?, ?, 'Fractions')`, lesson, f.dataset, f.classroom)
	home := newAppDevice(t, "home", schema, models)
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	if _, err := fac.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	fac.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom) // the app keeps the lesson

	for range 2 {
		send(fac, home)
		send(home, fac)
	}
	fac.exec(`UPDATE lesson SET title = 'Fractions II' WHERE id = ?`, lesson) // a later edit on Facility
	send(fac, home)
	send(home, fac)

	// The same record on both; on the tablet it waits, out of the app.
	same := func(when string) {
		t.Helper()
		if fr, hr := fac.record(lesson), home.record(lesson); fr == nil || hr == nil ||
			fr.Serialized != hr.Serialized || fr.Deleted != hr.Deleted || fr.Conflicting != hr.Conflicting {
			t.Fatalf("%s: the lesson's record differs: facility %+v, home %+v", when, fr, hr)
		}
		history := func(d *device) string {
			var h string
			if err := d.app.QueryRow(`SELECT group_concat(instance_id || ':' || counter) FROM
				(SELECT instance_id, counter FROM morango_recordmaxcounter WHERE store_model_id = ? ORDER BY instance_id)`, lesson).Scan(&h); err != nil {
				t.Fatal(err)
			}
			return h
		}
		if fh, hh := history(fac), history(home); fh != hh {
			t.Fatalf("%s: the lesson's history is %s on facility, %s on home", when, fh, hh)
		}
	}
	same("after the edit")
	var pending string
	if err := home.app.QueryRow(`SELECT deserialization_error FROM morango_store WHERE id = ? AND dirty_bit`, lesson).Scan(&pending); err != nil ||
		!strings.Contains(pending, "is deleted") {
		t.Fatalf("home's lesson is not pending for its deleted classroom: %q, %v", pending, err)
	}
	if n := home.count(`SELECT count(*) FROM lesson`); n != 0 {
		t.Fatalf("home's app shows %d lessons of a deleted classroom", n)
	}
	m := filepath.Join(dir, "last.manifest")
	fac.manifest(m)
	if e := home.export(filepath.Join(dir, "last.bundle"), m); e.Records != 0 {
		t.Fatalf("home sends %d records of its own", e.Records)
	}

	// Facility's app deletes the lesson at last: the tablet takes the
	// deletion, and nothing waits any more.
	fac.exec(`DELETE FROM lesson WHERE id = ?`, lesson)
	send(fac, home)
	same("after the deletion")
	if r := home.record(lesson); !r.Deleted || r.Dirty {
		t.Fatalf("home's lesson after the deletion: %+v", r)
	}
}
