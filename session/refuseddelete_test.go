package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// keeping makes a facility with its sample data and a city that may read
// and write all of it, whose app refuses to delete the rows of table.
func keeping(t *testing.T, table string) (fac, city *device, f facilityData, dir string) {
	dir = t.TempDir()
	fac = newAppDevice(t, "facility", "", "")
	fac.root()
	f = seedFacility(fac)
	city = newAppDevice(t, "city", fmt.Sprintf(`CREATE TRIGGER %[1]s_kept BEFORE DELETE ON %[1]s
	BEGIN SELECT RAISE(ABORT, '%[1]s rows are kept'); END;`, table), "")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": f.dataset})
	return fac, city, f, dir
}

// An app that keeps some rows (a trigger refuses to delete them) must not
// make every import fail: the rest of the bundle is applied, the records
// whose rows it kept wait, pending, with the reason, and once the app lets
// them go they leave it at the next try.
func TestAppRefusesDeletion(t *testing.T) {
	fac, city, f, dir := keeping(t, "contentlog")
	fac.sendTo(city, dir, true)

	waiting := func(id string) string {
		t.Helper()
		var dirty bool
		var reason string
		if err := city.app.QueryRow(`SELECT dirty_bit, deserialization_error FROM morango_store WHERE id = ?`, id).Scan(&dirty, &reason); err != nil {
			t.Fatal(err)
		}
		if !dirty {
			return ""
		}
		return reason
	}
	inApp := func(table, id string) bool {
		return city.count(`SELECT count(*) FROM `+table+` WHERE id = ?`, id) == 1
	}

	// A log deleted on the facility, and a note added with it; then the
	// learner, whose deletion cascades to the learner's log that comes in
	// the same bundle.
	note := ids.Random()
	fac.exec(`DELETE FROM contentlog WHERE id = ?`, f.otherLog)
	fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'inspection')`, note, f.dataset)
	fac.sendTo(city, dir, true)
	if !inApp("adminnote", note) {
		t.Error("the note that came with the refused deletion is not in city's app")
	}
	if !inApp("contentlog", f.otherLog) || !strings.Contains(waiting(f.otherLog), "the app refused to delete the row: ") {
		t.Errorf("the deleted log: in the app %v, waiting for %q", inApp("contentlog", f.otherLog), waiting(f.otherLog))
	}

	fac.exec(`UPDATE contentlog SET progress = 0.9 WHERE id = ?`, f.learnerLog)
	fac.exec(`DELETE FROM facilityuser WHERE id = ?`, f.learner)
	fac.sendTo(city, dir, true)
	if inApp("facilityuser", f.learner) {
		t.Error("the deleted learner is still in city's app")
	}
	if !inApp("contentlog", f.learnerLog) || !strings.Contains(waiting(f.learnerLog), "contentlog rows are kept") {
		t.Errorf("the learner's log: in the app %v, waiting for %q", inApp("contentlog", f.learnerLog), waiting(f.learnerLog))
	}

	// The app lets its logs go: the next try deletes them.
	city.exec(`DROP TRIGGER contentlog_kept`)
	r, tried, err := city.db.RetryPending(t.Context())
	if err != nil || !tried {
		t.Fatalf("retry: %v, tried %v", err, tried)
	}
	if r.Pending != 0 || inApp("contentlog", f.otherLog) || inApp("contentlog", f.learnerLog) {
		t.Errorf("after the retry: %+v, logs in the app %v %v", r, inApp("contentlog", f.otherLog), inApp("contentlog", f.learnerLog))
	}
	// Both devices hold the same records again.
	fac.sendTo(city, dir, true)
	city.sendTo(fac, dir, true)
	for _, id := range []string{f.otherLog, f.learnerLog} {
		if fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, id)+city.count(`SELECT count(*) FROM contentlog WHERE id = ?`, id) != 0 {
			t.Errorf("log %s is still somewhere", id[:8])
		}
	}
}
