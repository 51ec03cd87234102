package session

import (
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
)

// replacedOf lists what morango_conflictlog keeps of id as replaced.
func replacedOf(t *testing.T, d *device, model, id string) []store.Replaced {
	t.Helper()
	var out []store.Replaced
	if err := d.db.Replaced(t.Context(), model, func(r store.Replaced) error {
		if r.ID == id {
			out = append(out, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The tablet's app changed a classroom it may not write (the change
// waits). The facility deletes that classroom and another one in the same
// exchange; the tablet's app refuses to delete the other one, so the rows
// are deleted one by one. The waiting change, whose row is deleted, is
// kept in the conflict log all the same.
func TestReplacedChangeLoggedWhenDeletionBatchRefused(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	other := ids.Random()
	fac.exec(`INSERT INTO classroom (id, dataset_id, name) VALUES (?, ?, 'Class 6')`, other, f.dataset)
	fac.sendTo(home, dir, true)
	if n := home.count(`SELECT count(*) FROM classroom WHERE id = ?`, other); n != 1 {
		t.Fatalf("home lacks the second classroom")
	}
	home.exec(`CREATE TRIGGER keep_other BEFORE DELETE ON classroom WHEN OLD.id = '` + other + `' BEGIN SELECT RAISE(ABORT, 'kept by the app'); END`)
	home.exec(`UPDATE classroom SET name = 'Hacked by tablet' WHERE id = ?`, f.classroom)
	home.sendTo(fac, dir, true)
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ? AND error <> ''`, f.classroom); n != 1 {
		t.Fatalf("home: the classroom's change does not wait")
	}

	fac.exec(`DELETE FROM classroom WHERE id IN (?, ?)`, f.classroom, other)
	fac.sendTo(home, dir, true)

	if n := home.count(`SELECT count(*) FROM classroom WHERE id = ?`, f.classroom); n != 0 {
		t.Fatalf("home: the classroom is still in the app")
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ?`, f.classroom); n != 0 {
		t.Fatalf("home: the change still waits")
	}
	kept := replacedOf(t, home, "classroom", f.classroom)
	if len(kept) != 1 || !strings.Contains(kept[0].Version.Serialized, "Hacked by tablet") {
		t.Errorf("home: the waiting change the deletion replaced is not kept in the log: %+v", kept)
	}
}

// The tablet's app changed a classroom it may not write; the facility
// deletes it, and the tablet's app ignores the deletion (RAISE(IGNORE)).
// The row, with the app's change, stays and its record waits: nothing was
// replaced, and nothing is logged, at the import or at any retry.
func TestReplacedChangeNotLoggedWhenDeletionIgnored(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	home.exec(`CREATE TRIGGER ignore_delete BEFORE DELETE ON classroom BEGIN SELECT RAISE(IGNORE); END`)
	home.exec(`UPDATE classroom SET name = 'Hacked by tablet' WHERE id = ?`, f.classroom)
	home.sendTo(fac, dir, true)

	fac.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom)
	fac.sendTo(home, dir, true)
	for range 2 {
		if _, _, err := home.db.RetryPending(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := home.count(`SELECT count(*) FROM classroom WHERE id = ? AND name = 'Hacked by tablet'`, f.classroom); n != 1 {
		t.Fatalf("home: the app did not keep its row")
	}
	kept := replacedOf(t, home, "classroom", f.classroom)
	if len(kept) > 1 {
		t.Errorf("home: the change is logged %d times", len(kept))
	}
	if len(kept) != 0 {
		t.Errorf("home: the change is logged as replaced while the app still shows it: %+v", kept[0])
	}
}
