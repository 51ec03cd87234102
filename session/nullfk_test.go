package session

import (
	"fmt"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// Home may write the learner's attempt; its classroom is deleted; its
// lesson_id is NULL. Home must delete it (and send the deletion), whether
// or not some lesson waits for its own deleted classroom: a NULL
// reference once counted as a reference to a waiting record.
func TestNullForeignKeyDoesNotWait(t *testing.T) {
	const schema = lessonTable + `
CREATE TABLE attempt (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, user_id TEXT NOT NULL, classroom_id TEXT NOT NULL, lesson_id TEXT);`
	const models = lessonModel + `
	{"name": "attempt", "table": "attempt", "partition": "${dataset_id}:user-rw:${user_id}",
	 "foreign_keys": {"classroom_id": "classroom", "lesson_id": "lesson", "user_id": "facilityuser"}},`
	for _, withLesson := range []bool{false, true} {
		t.Run(fmt.Sprint("lesson waits=", withLesson), func(t *testing.T) {
			dir := t.TempDir()
			send := func(from, to *device) { from.sendTo(to, dir, false) }
			fac := newAppDevice(t, "facility", schema, models)
			fac.root()
			f := seedFacility(fac)
			attempt := ids.Random()
			if withLesson { // not the attempt's: read-only on home, it waits there
				fac.exec(`INSERT INTO lesson VALUES (?, ?, ?, 'Fractions')`, ids.Random(), f.dataset, f.classroom)
			}
			fac.exec(`INSERT INTO attempt VALUES (?, ?, ?, ?, NULL)`, attempt, f.dataset, f.learner, f.classroom)
			home := newAppDevice(t, "home", schema, models)
			grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
			if _, err := fac.db.Serialize(t.Context()); err != nil {
				t.Fatal(err)
			}
			fac.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom) // the app keeps the rest
			send(fac, home)
			send(home, fac)
			if r := home.record(attempt); r == nil || !r.Deleted || r.Dirty {
				var why string
				home.app.QueryRow(`SELECT deserialization_error FROM morango_store WHERE id = ?`, attempt).Scan(&why)
				t.Fatalf("attempt not deleted by home: deleted=%v dirty=%v, pending: %q", r.Deleted, r.Dirty, why)
			}
			if r := fac.record(attempt); !r.Deleted {
				t.Fatalf("facility did not get the attempt's deletion")
			}
		})
	}
}
