package session

import (
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// The facility deletes a classroom; its app keeps the classroom's lesson
// (read-only on a learner's tablet) and the learner's progress in it (a
// lessonlog in the learner's own partition, which the tablet may write).
// The tablet gets all three: the lesson waits, pending, out of the app, and
// so does its child, the learner's log: a deletion of it minted by the
// tablet would go back and delete the learner's progress in a lesson the
// facility keeps, edits and shows.
func TestPendingParentKeepsChildren(t *testing.T) {
	fac, home, f, lesson, log := lessonLogDevices(t)
	dir := t.TempDir()
	send := func(from, to *device) { from.sendTo(to, dir, false) }
	if _, err := fac.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	fac.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom) // the app keeps the lesson and its log

	send(fac, home)
	if r := home.record(lesson); r == nil || r.Deleted || !r.Dirty {
		t.Fatalf("home's lesson should wait, pending: %+v", r)
	}
	var why string
	if err := home.app.QueryRow(`SELECT deserialization_error FROM morango_store WHERE id = ? AND dirty_bit`, log).Scan(&why); err != nil ||
		!strings.Contains(why, "its own parent is deleted") {
		t.Fatalf("home's log does not wait for its lesson: %q, %v", why, err)
	}
	if n := home.count(`SELECT count(*) FROM lessonlog`); n != 0 {
		t.Fatalf("home's app shows %d logs of a lesson out of the app", n)
	}
	send(home, fac)
	fac.exec(`UPDATE lesson SET title = 'Fractions II' WHERE id = ?`, lesson) // the facility keeps using the lesson
	send(fac, home)
	send(home, fac)

	if r := fac.record(lesson); r == nil || r.Deleted {
		t.Fatalf("facility's lesson: %+v", r)
	}
	if r := fac.record(log); r == nil || r.Deleted || fac.count(`SELECT count(*) FROM lessonlog WHERE id = ?`, log) != 1 {
		t.Fatalf("the learner's log of a lesson the facility keeps was deleted on the facility by the tablet: %+v, app rows %d",
			r, fac.count(`SELECT count(*) FROM lessonlog WHERE id = ?`, log))
	}
}

// The learner's log waits on the tablet with the facility's edit (the app
// refuses the engine's write for a while), so the tablet notes what its
// app shows of the log. Then the facility deletes the classroom: the
// lesson, read-only on the tablet and edited by the facility since, waits
// out of the app, and the log leaves the app with it. What the app shows
// of the log is now no row: when the app writes the row back as it was,
// that is a change of the learner's, and it must become a version.
func TestWaitingChildLeavingAppShowsNoRow(t *testing.T) {
	fac, home, f, lesson, log := lessonLogDevices(t)
	dir := t.TempDir()
	send := func(from, to *device) { from.sendTo(to, dir, false) }
	send(fac, home)
	if n := home.count(`SELECT count(*) FROM lessonlog WHERE progress = 0.5`); n != 1 {
		t.Fatalf("home's app shows %d logs, want 1", n)
	}

	home.exec(`CREATE TRIGGER busy BEFORE UPDATE ON lessonlog WHEN EXISTS (SELECT 1 FROM morango_applying)
		BEGIN SELECT RAISE(ABORT, 'the log is open'); END`)
	fac.exec(`UPDATE lessonlog SET progress = 0.7 WHERE id = ?`, log)
	send(fac, home)
	if r := home.record(log); r == nil || !r.Dirty {
		t.Fatalf("the facility's edit of the log does not wait on home: %+v", r)
	}
	home.exec(`DROP TRIGGER busy`)
	fac.exec(`UPDATE lesson SET title = 'Fractions II' WHERE id = ?`, lesson)
	fac.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom)
	send(fac, home)
	if n := home.count(`SELECT count(*) FROM lessonlog`); n != 0 {
		t.Fatalf("home's app shows %d logs of a lesson out of the app", n)
	}
	if n := home.count(`SELECT count(*) FROM morango_shown WHERE id = ? AND serialized IS NOT NULL`, log); n != 0 {
		t.Errorf("home notes that its app shows the log, which left the app")
	}

	home.exec(`INSERT INTO lessonlog (id, dataset_id, user_id, lesson_id, progress) VALUES (?, ?, ?, ?, 0.5)`, log, f.dataset, f.learner, lesson)
	res, err := home.db.Serialize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions() != 1 {
		t.Errorf("the app wrote the log back: %d versions, want 1 (%+v)", res.Versions(), res)
	}
}

// lessonLogDevices makes the facility, with a lesson of its classroom and
// the learner's log of it (progress 0.5), and the learner's tablet with a
// single-user certificate; nothing is sent yet.
func lessonLogDevices(t *testing.T) (fac, home *device, f facilityData, lesson, log string) {
	t.Helper()
	const schema = lessonTable + `
CREATE TABLE lessonlog (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, user_id TEXT NOT NULL, lesson_id TEXT NOT NULL, progress REAL);`
	const models = lessonModel + `
	{"name": "lessonlog", "table": "lessonlog", "partition": "${dataset_id}:user-rw:${user_id}", "foreign_keys": {"lesson_id": "lesson", "user_id": "facilityuser"}},`
	fac = newAppDevice(t, "facility", schema, models)
	fac.root()
	f = seedFacility(fac)
	lesson, log = ids.Random(), ids.Random()
	fac.exec(`INSERT INTO lesson (id, dataset_id, classroom_id, title) VALUES (?, ?, ?, 'Fractions')`, lesson, f.dataset, f.classroom)
	fac.exec(`INSERT INTO lessonlog (id, dataset_id, user_id, lesson_id, progress) VALUES (?, ?, ?, ?, 0.5)`, log, f.dataset, f.learner, lesson)
	home = newAppDevice(t, "home", schema, models)
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	return fac, home, f, lesson, log
}
