package session

import (
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// learnerTablet makes the facility and a learner's tablet (single-user)
// that has the facility's data; dir is the stick.
func learnerTablet(t *testing.T) (fac, home *device, f facilityData, dir string) {
	dir = t.TempDir()
	fac = newDevice(t, "facility")
	fac.root()
	f = seedFacility(fac)
	home = newDevice(t, "home")
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	fac.sendTo(home, dir, true)
	return fac, home, f, dir
}

// A learner's tablet may read the classroom and its own user row but not
// write them, and may neither read nor write admin notes. Its app changes
// all three anyway. None of those changes can ever leave the tablet, so
// none may become a version: a version that no other device gets would
// compete with the facility's later versions on the tablet alone, and the
// two devices would show different data for good. The changes wait with
// the reason (status lists them), the learner's own log still travels, and
// when the facility's next version of the classroom arrives the tablet
// shows it.
func TestChangesOutsideWriteScopeWait(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)

	note := ids.Random()
	home.exec(`UPDATE classroom SET name = 'Hacked by tablet' WHERE id = ?`, f.classroom)
	home.exec(`UPDATE facilityuser SET username = 'ana2' WHERE id = ?`, f.learner)
	home.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'not mine to write')`, note, f.dataset)
	home.exec(`UPDATE contentlog SET progress = 0.9 WHERE id = ?`, f.learnerLog)
	home.sendTo(fac, dir, true)

	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ? AND progress = 0.9`, f.learnerLog); n != 1 {
		t.Errorf("facility: the learner's own edit has not arrived")
	}
	for _, id := range []string{f.classroom, f.learner, note} {
		if n := home.count(`SELECT count(*) FROM morango_store WHERE id = ? AND last_saved_instance = (SELECT id FROM morango_instanceid WHERE current)`, id); n != 0 {
			t.Errorf("home: record %s got a version of home's, which can never leave home", id[:8])
		}
		if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ? AND error LIKE '%may not write%'`, id); n != 1 {
			var why string
			home.app.QueryRow(`SELECT error FROM morango_dirty WHERE id = ?`, id).Scan(&why)
			t.Errorf("home: the change of %s does not wait with its reason (%q)", id[:8], why)
		}
	}
	st, err := home.db.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) < 3 {
		t.Errorf("home: status lists %d waiting rows, want the 3 changes home may not write", len(st.Problems))
	}

	fac.exec(`UPDATE classroom SET name = 'Class 5' WHERE id = ?`, f.classroom)
	fac.sendTo(home, dir, true)
	home.sendTo(fac, dir, true)
	for _, d := range []*device{fac, home} {
		var name string
		if err := d.app.QueryRow(`SELECT name FROM classroom WHERE id = ?`, f.classroom).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if name != "Class 5" {
			t.Errorf("%s: the classroom is %q, want the facility's %q", d.name, name, "Class 5")
		}
	}
	if n := home.count(`SELECT count(*) FROM morango_store WHERE conflicting_serialized_data <> ''`); n != 0 {
		t.Errorf("home: %d records with conflicting versions", n)
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ?`, f.classroom); n != 0 {
		t.Errorf("home: the classroom's change still waits, though the facility's version replaced it")
	}
}

// A shared tablet holds a certificate for one learner; the app records a
// second learner's work before that learner's certificate arrives. The
// work waits, and goes out with the first exchange after the certificate
// is imported.
func TestChangesWaitForCertificate(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)

	log := ids.Random()
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c9', 0.5)`, log, f.dataset, f.other)
	home.sendTo(fac, dir, true)
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, log); n != 0 {
		t.Fatalf("facility: the other learner's log arrived from a tablet that may not write it")
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ? AND error LIKE 'this device may not write%'`, log); n != 1 {
		t.Fatalf("home: the other learner's log does not wait with its reason")
	}

	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.other})
	home.sendTo(fac, dir, true)
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, log); n != 1 {
		t.Errorf("facility: the other learner's log has not arrived once home may write it")
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Errorf("home: %d change(s) still wait", n)
	}
}

// A hard deletion of a record the tablet may not write could never leave
// it, and would erase the record on the tablet alone, for good: morango
// delete refuses it, and one the app makes with SQL waits like a deletion,
// until the facility's next version brings the row back.
func TestHardDeleteOutsideWriteScope(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)

	err := home.db.HardDelete(t.Context(), "classroom", f.classroom)
	if err == nil || !strings.Contains(err.Error(), "may not write") {
		t.Fatalf("home: hard delete of the classroom: %v, want a refusal", err)
	}
	if n := home.count(`SELECT count(*) FROM classroom WHERE id = ?`, f.classroom); n != 1 {
		t.Fatalf("home: the refused hard deletion deleted the row")
	}
	if err := home.db.HardDelete(t.Context(), "contentlog", f.learnerLog); err != nil {
		t.Fatalf("home: hard delete of the learner's own log: %v", err)
	}

	home.exec(`INSERT INTO morango_harddeletedmodels (id, profile) SELECT ?, profile FROM morango_store WHERE id = ?`, f.classroom, f.classroom)
	home.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom)
	home.sendTo(fac, dir, true)
	if n := home.count(`SELECT count(*) FROM morango_store WHERE id = ? AND (hard_deleted OR deleted)`, f.classroom); n != 0 {
		t.Errorf("home: the classroom's record is deleted on home, which may not write it")
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ? AND error LIKE 'this device may not write%'`, f.classroom); n != 1 {
		t.Errorf("home: the app's hard deletion of the classroom does not wait with its reason")
	}
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.learnerLog); n != 0 {
		t.Errorf("facility: the learner's hard deletion of its own log has not arrived")
	}

	fac.exec(`UPDATE classroom SET name = 'Class 6' WHERE id = ?`, f.classroom)
	fac.sendTo(home, dir, true)
	if n := home.count(`SELECT count(*) FROM classroom WHERE id = ? AND name = 'Class 6'`, f.classroom); n != 1 {
		t.Errorf("home: the facility's version of the classroom has not come back")
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Errorf("home: %d change(s) still wait", n)
	}
}
