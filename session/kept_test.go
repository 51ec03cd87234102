package session

import (
	"strings"
	"testing"
)

// A row the app keeps while its record is hard-deleted holds the erased
// data. A later write of the app to that row (a no-op UPDATE here) must
// not be recorded as a version: one made from the kept row, having seen
// the hard deletion, would bring the erased data back on every device, the
// one that erased it included.
func TestKeptRowUndoesHardDeletion(t *testing.T) {
	fac, city, f, dir := keeping(t, "adminnote")
	fac.exec(`UPDATE adminnote SET body = 'secret salaries' WHERE id = ?`, f.note)
	fac.sendTo(city, dir, true)

	// The admin erases the note.
	fac.exec(`INSERT INTO morango_harddeletedmodels (id, profile) VALUES (?, 'facilitydata')`, f.note)
	fac.sendTo(city, dir, true)
	if r := city.record(f.note); r == nil || !r.HardDeleted || !r.Dirty {
		t.Fatalf("city: the hard-deleted note: %+v", r)
	}
	if city.count(`SELECT count(*) FROM adminnote WHERE id = ?`, f.note) != 1 {
		t.Fatal("city's app did not keep the note")
	}

	// The city's app touches the kept row, changing nothing.
	city.exec(`UPDATE adminnote SET body = body WHERE id = ?`, f.note)
	city.sendTo(fac, dir, true)
	fac.sendTo(city, dir, true)

	for _, d := range []*device{fac, city} {
		if r := d.record(f.note); r == nil || !r.HardDeleted || strings.Contains(r.Serialized, "secret") {
			t.Errorf("%s: the hard-deleted note's record: %+v", d.name, r)
		}
	}
	if n := fac.count(`SELECT count(*) FROM adminnote WHERE id = ? AND body = 'secret salaries'`, f.note); n != 0 {
		t.Errorf("facility: the note it erased is back in its app")
	}
}

// The same with a soft deletion: a write of the app to a row it kept while
// the deletion waits does not bring the deleted record back elsewhere.
func TestKeptRowUndoesDeletion(t *testing.T) {
	fac, city, f, dir := keeping(t, "contentlog")
	fac.sendTo(city, dir, true)
	fac.exec(`DELETE FROM contentlog WHERE id = ?`, f.otherLog)
	fac.sendTo(city, dir, true)
	city.exec(`UPDATE contentlog SET progress = progress WHERE id = ?`, f.otherLog)
	city.sendTo(fac, dir, true)
	if r := fac.record(f.otherLog); r == nil || !r.Deleted {
		t.Errorf("facility: the log it deleted: %+v", r)
	}
	if fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.otherLog) != 0 {
		t.Errorf("facility: the log it deleted is back in its app")
	}
}
