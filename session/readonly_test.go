package session

import (
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/store"
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
	// What the tablet's app wrote is not lost without a trace: the change
	// the facility's version replaced is kept on the tablet.
	var kept []store.Replaced
	if err := home.db.Replaced(t.Context(), "classroom", func(r store.Replaced) error {
		kept = append(kept, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].ID != f.classroom || kept[0].Version.Instance != "" || !strings.Contains(kept[0].Version.Serialized, "Hacked by tablet") {
		t.Errorf("home: the replaced classroom change is not kept: %+v", kept)
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

// homeVersion reports whether home made the head version of record id.
func homeVersion(d *device, id string) bool {
	d.t.Helper()
	return d.count(`SELECT count(*) FROM morango_store WHERE id = ? AND last_saved_instance = (SELECT id FROM morango_instanceid WHERE current)`, id) == 1
}

func waitReason(d *device, model, id string) string {
	var why string
	d.app.QueryRow(`SELECT error FROM morango_dirty WHERE model = ? AND id = ?`, model, id).Scan(&why)
	return why
}

// An app row of one model whose id a record of another model already uses
// waits in morango_dirty with that reason. When the other model's record
// is written into the app (the facility edits the classroom), only a
// change of that model's row stops waiting: the contentlog row, which
// nothing overwrote, still waits with its reason.
func TestWaitingEntryOfOtherModelStays(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)

	// home's app makes a log of the learner (home may write it) whose id
	// is the classroom's.
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c7', 0.5)`, f.classroom, f.dataset, f.learner)
	home.sendTo(fac, dir, true)
	before := waitReason(home, "contentlog", f.classroom)
	if !strings.Contains(before, "already used") {
		t.Fatalf("home: the log does not wait with its reason (%q)", before)
	}

	fac.exec(`UPDATE classroom SET name = 'Class 5' WHERE id = ?`, f.classroom)
	fac.sendTo(home, dir, true)
	if n := home.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.classroom); n != 1 {
		t.Fatalf("home: the log row is gone")
	}
	if after := waitReason(home, "contentlog", f.classroom); after != before {
		t.Errorf("home: the contentlog row, which the classroom's version did not overwrite, no longer waits: reason %q, was %q", after, before)
	}
}

// The tablet edits its own log (partition user-rw:learner, in its write
// scope) and moves it to another learner: the record keeps its partition,
// but its data now puts it in user-rw:other, outside the tablet's write
// scope, which importers refuse (fieldsOutside). The edit must wait, not
// become a version that can never leave the tablet and would compete there
// alone with the facility's versions.
func TestEditMovingRecordOutOfScopeWaits(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)

	home.exec(`UPDATE contentlog SET user_id = ? WHERE id = ?`, f.other, f.learnerLog)
	_, res := home.sendTo(fac, dir, true)
	accepted := fac.count(`SELECT count(*) FROM contentlog WHERE id = ? AND user_id = ?`, f.learnerLog, f.other) == 1
	if homeVersion(home, f.learnerLog) && !accepted {
		var why string
		if res != nil && res.Store != nil {
			for _, r := range res.Store.Refusals {
				why += r.Reason + "; "
			}
		}
		t.Errorf("home made a version of the log the facility refuses (%s); nothing waits: %q", why, waitReason(home, "contentlog", f.learnerLog))
	}

	fac.exec(`UPDATE contentlog SET progress = 0.5 WHERE id = ?`, f.learnerLog)
	fac.sendTo(home, dir, true)
	home.sendTo(fac, dir, true)
	var a, b string
	fac.app.QueryRow(`SELECT user_id || ' ' || progress FROM contentlog WHERE id = ?`, f.learnerLog).Scan(&a)
	home.app.QueryRow(`SELECT user_id || ' ' || progress FROM contentlog WHERE id = ?`, f.learnerLog).Scan(&b)
	if a != b {
		t.Errorf("the log differs after exchanges both ways: facility %q, home %q", a, b)
	}
	if r := home.record(f.learnerLog); r.Conflicting != "" || homeVersion(home, f.learnerLog) {
		t.Errorf("home: after the facility's edit the log still holds home's version or a conflict: %+v (app %q)", r, b)
	}
}

// The tablet edits a row it may not write and then the app undoes the
// edit: the row equals its record again and nothing should wait.
func TestRevertedEditStopsWaiting(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	home.exec(`UPDATE classroom SET name = 'Hacked' WHERE id = ?`, f.classroom)
	home.sendTo(fac, dir, true)
	if why := waitReason(home, "classroom", f.classroom); !strings.Contains(why, "may not write") {
		t.Fatalf("home: the edit does not wait (%q)", why)
	}
	home.exec(`UPDATE classroom SET name = 'Class 4' WHERE id = ?`, f.classroom)
	home.sendTo(fac, dir, true)
	if n := home.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Errorf("home: %d change(s) still wait after the app undid the edit", n)
	}
}

// The tablet edits the classroom (waits); the facility deletes it, or
// hard-deletes it. Both devices end without the row and nothing waits.
func TestReadOnlyEditThenFacilityDeletes(t *testing.T) {
	for _, hard := range []bool{false, true} {
		name := "delete"
		if hard {
			name = "hard-delete"
		}
		t.Run(name, func(t *testing.T) {
			fac, home, f, dir := learnerTablet(t)
			home.exec(`UPDATE classroom SET name = 'Hacked' WHERE id = ?`, f.classroom)
			home.sendTo(fac, dir, true)
			if hard {
				if err := fac.db.HardDelete(t.Context(), "classroom", f.classroom); err != nil {
					t.Fatal(err)
				}
			} else {
				fac.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom)
			}
			fac.sendTo(home, dir, true)
			home.sendTo(fac, dir, true)
			for _, d := range []*device{fac, home} {
				if n := d.count(`SELECT count(*) FROM classroom WHERE id = ?`, f.classroom); n != 0 {
					t.Errorf("%s: the classroom is still in the app", d.name)
				}
			}
			if n := home.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
				t.Errorf("home: %d change(s) still wait", n)
			}
		})
	}
}

// Mixed serialization in small chunks: own edits and read-only edits,
// interleaved in id order. Own edits travel, read-only ones wait.
func TestChunkedOwnAndReadOnlyChanges(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	saved := store.SerializeChunk
	store.SerializeChunk = 2
	defer func() { store.SerializeChunk = saved }()

	var own, ro []string
	for i := 0; i < 7; i++ {
		id := ids.Random()
		home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c', 0.1)`, id, f.dataset, f.learner)
		own = append(own, id)
		id = ids.Random()
		home.exec(`INSERT INTO classroom (id, dataset_id, name) VALUES (?, ?, 'ro')`, id, f.dataset)
		ro = append(ro, id)
	}
	home.exec(`UPDATE classroom SET name = 'x' WHERE id = ?`, f.classroom)
	home.exec(`UPDATE contentlog SET progress = 0.9 WHERE id = ?`, f.learnerLog)
	if _, err := home.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	home.sendTo(fac, dir, true)
	for _, id := range append(own, f.learnerLog) {
		if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, id); n != 1 {
			t.Errorf("facility: own log %s missing", id[:8])
		}
	}
	for _, id := range append(ro, f.classroom) {
		if why := waitReason(home, "classroom", id); !strings.Contains(why, "may not write") {
			t.Errorf("home: classroom %s does not wait (%q)", id[:8], why)
		}
	}
}

// A device without certificates: nothing waits for scope.
func TestNoCertificateNothingWaits(t *testing.T) {
	d := newDevice(t, "plain")
	d.exec(`INSERT INTO facilitydataset (id) VALUES (?)`, ids.Random())
	d.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, 'ds', 'x')`, ids.Random())
	r, err := d.db.Serialize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r.Created != 2 || r.Failed != 0 {
		t.Errorf("serialize: %+v", r)
	}
}

// morango delete of a row that never became a record (its partition
// column holds the separator) deletes it: no erasure needs to leave the
// device.
func TestHardDeleteOfRowThatIsNoRecord(t *testing.T) {
	_, home, f, _ := learnerTablet(t)
	id := ids.Random()
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id) VALUES (?, ?, ?, 'c')`, id, f.dataset, f.learner+":x")
	if _, err := home.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := home.db.HardDelete(t.Context(), "contentlog", id); err != nil {
		t.Errorf("home: morango delete of a row that is no record: %v", err)
	}
}

// The tablet's app hard-deletes (plain SQL, morango_harddeletedmodels) the
// classroom, which it may not write: the erasure waits. The tablet is then
// granted full-facility, so it may write the classroom: the erasure, not a
// mere deletion, is made and reaches the facility.
func TestWaitingHardDeletionStaysHard(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	home.exec(`INSERT INTO morango_harddeletedmodels (id, profile) SELECT ?, profile FROM morango_store WHERE id = ?`, f.classroom, f.classroom)
	home.exec(`DELETE FROM classroom WHERE id = ?`, f.classroom)
	home.sendTo(fac, dir, true)
	if why := waitReason(home, "classroom", f.classroom); !strings.Contains(why, "may not write") {
		t.Fatalf("home: the hard deletion does not wait (%q)", why)
	}
	grant(t, fac, home, "full-facility", map[string]string{"dataset_id": f.dataset})
	home.sendTo(fac, dir, true)
	for _, d := range []*device{home, fac} {
		r := d.record(f.classroom)
		if r == nil || !r.HardDeleted || r.Serialized != "{}" {
			t.Errorf("%s: the classroom's record is not erased once home may write it: %+v", d.name, r)
		}
	}
}

// Two full-facility devices rename the shared classroom concurrently;
// the learner's tablet receives both versions, and morango conflicts on
// the tablet lists the conflict, as it does everywhere. The learner (or
// whoever holds the tablet) runs morango resolve to keep the losing name.
// The tablet may not write the classroom, so the decision would be a
// version that could never leave it, and the tablet would show one name
// and the facility another for good. Resolve refuses a record this device
// may not write, as morango delete does; the devices still agree after
// exchanges both ways.
func TestResolveOutsideWriteScopeIsRefused(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	city := newDevice(t, "city")
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": f.dataset})
	fac.sendTo(city, dir, true)
	fac.exec(`UPDATE classroom SET name = 'Class 4 (facility)' WHERE id = ?`, f.classroom)
	city.exec(`UPDATE classroom SET name = 'Class 4 (city)' WHERE id = ?`, f.classroom)
	city.sendTo(fac, dir, true)
	fac.sendTo(city, dir, true)
	fac.sendTo(home, dir, true)

	var conflicts []store.Conflict
	if err := home.db.Conflicts(t.Context(), "classroom", func(c store.Conflict) error {
		conflicts = append(conflicts, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(conflicts) != 1 || len(conflicts[0].Lost) != 1 {
		t.Fatalf("home: conflicts %+v, want the classroom's", conflicts)
	}
	_, err := home.db.Resolve(t.Context(), f.classroom, store.VersionName(conflicts[0].Lost[0]))
	if err == nil || !strings.Contains(err.Error(), "may not write") || !strings.Contains(hintOf(err), "on a device whose certificate may write") {
		t.Errorf("resolve on a tablet that may not write the classroom: %v (hint %q), want a refusal that says where to resolve", err, hintOf(err))
	}
	for range 2 {
		home.sendTo(fac, dir, true)
		fac.sendTo(home, dir, true)
		fac.sendTo(city, dir, true)
	}
	names := map[string]string{}
	for _, d := range []*device{fac, city, home} {
		var name string
		if err := d.app.QueryRow(`SELECT name FROM classroom WHERE id = ?`, f.classroom).Scan(&name); err != nil {
			t.Fatal(err)
		}
		names[d.name] = name
	}
	if names["home"] != names["facility"] || names["city"] != names["facility"] {
		t.Errorf("resolve on a tablet that may not write the classroom disagree after exchanges both ways: %v", names)
	}
}

// A certificate of the device whose chain stops verifying (a profile whose
// scope definitions changed, a damaged row) grants nothing, and every
// change under it waits as one the device may not write. Status says which
// certificate and why, not only that each row may not be written.
func TestStatusNamesCertificateThatDoesNotVerify(t *testing.T) {
	_, home, f, _ := learnerTablet(t)
	home.exec(`UPDATE morango_certificate SET signature = 'AAAA' || substr(signature, 5) WHERE id = ?`, home.cert)
	home.exec(`UPDATE contentlog SET progress = 0.7 WHERE id = ?`, f.learnerLog)
	if _, err := home.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, err := home.db.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var cert, row bool
	for _, p := range st.Problems {
		cert = cert || p.Stage == "certificate" && p.ID == home.cert && strings.Contains(p.Reason, "does not verify")
		row = row || p.ID == f.learnerLog
	}
	if !cert || !row {
		t.Errorf("status lists the certificate: %v, the learner's waiting log: %v; problems %+v", cert, row, st.Problems)
	}
}
