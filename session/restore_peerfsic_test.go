package session

import (
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// The facility is backed up. The city then adds a note, and the facility's
// next exchange imports it and writes its manifest: its own counter is
// still the backup's (an import adds no version of its own), but it holds
// the city's note. The facility then records a week of logs and sends
// them with 'export --for' the city's manifest, straight into the stick
// folder; the city's exchange imports them and writes its bundle for the
// facility against the manifest on the stick, which says the facility
// holds the note: the bundle leaves the note out. The facility's disk
// fails and the backup (without the note) is restored; its first contact
// is 'morango import' of that bundle. The import renews (the bundle's
// counters hold more of the facility than the file). The bundle's peer
// counters hold no more of the former instance than the file, but more of
// the city's: it was computed against a later state of the file, and its
// counters are not claimed (among them the city's up to the note, which
// the restored file lacks and the bundle did not carry), so the note
// comes back.
func TestRestoredImportDoesNotClaimWhatPeerCountersSaidItHeld(t *testing.T) {
	stick, fac, city, backup, old, note := noteAfterBackup(t)
	db, app := restore(t, fac, backup, old)
	if n := count(t, app, `SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 0 {
		t.Fatalf("the backup holds the note")
	}
	r, err := Import(t.Context(), db, &DiskConnection{Bundle: filepath.Join(stick, BundleName(city.instance(), old))}, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := db.Instance(t.Context()); in.ID == old {
		t.Fatalf("the import did not renew the restored database")
	}
	for range 3 {
		visitStick(t, stick, fac, db)
		visitStick(t, stick, city, city.db)
	}
	if n := count(t, app, `SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 1 {
		t.Errorf("facility: the city's note, imported before the failure and lost in the restore, never came back (the import claimed %v, for_other %q)",
			r.Store.Claims, r.ForOther)
	}
	if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
		t.Errorf("facility: %d of the 5 logs of the lost week came back", n)
	}
}

// The same through 'morango exchange': before the restored facility
// visits, someone forgets the city on the stick ('morango forget city',
// by mistake or thinking it gone): its manifest and the bundles to it go,
// the bundle it wrote for the facility stays. Nothing left on the stick
// shows the restore before that bundle is imported (the facility's own
// former manifest holds its backup's counter), so the import renews, and
// must not claim the city's counters up to the note the restored file
// lacks.
func TestRestoredExchangeAfterForgetDoesNotClaimWhatPeerCountersSaidItHeld(t *testing.T) {
	stick, fac, city, backup, old, note := noteAfterBackup(t)
	db, app := restore(t, fac, backup, old)
	if _, _, err := Forget(nil, stick, city.instance()); err != nil {
		t.Fatal(err)
	}
	r := visitStick(t, stick, fac, db)
	if r.Renewed != old {
		t.Fatalf("the exchange did not renew: %v", describeFiles(r))
	}
	for range 3 {
		visitStick(t, stick, city, city.db)
		visitStick(t, stick, fac, db)
	}
	if n := count(t, app, `SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 1 {
		t.Errorf("facility: the city's note, lost in the restore, never came back (files: %v)", describeFiles(r))
	}
	if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
		t.Errorf("facility: %d of the 5 logs of the lost week came back", n)
	}
}

// noteAfterBackup sets up the story of the tests above: the facility is
// backed up; the city adds a note, which the facility imports (its manifest
// on the stick says so); the facility records a week of logs and exports
// them for the city's manifest into the stick; the city imports them and
// writes its bundle for the facility. It returns the stick, the devices,
// the backup, the facility's instance and the note's id.
func noteAfterBackup(t *testing.T) (stick string, fac, city *device, backup, old, note string) {
	t.Helper()
	stick = t.TempDir()
	fac, city, f := facilityAnd(t, "city")
	for range 2 {
		visitStick(t, stick, fac, fac.db)
		visitStick(t, stick, city, city.db)
	}
	backup = filepath.Join(t.TempDir(), "backup.sqlite3")
	if _, err := fac.app.Exec(`VACUUM INTO ?`, backup); err != nil {
		t.Fatal(err)
	}
	old = fac.instance()
	note = ids.Random()
	city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'from the city after the backup')`, note, f.dataset)
	visitStick(t, stick, city, city.db)
	visitStick(t, stick, fac, fac.db) // imports the note; its manifest on the stick says so
	if n := fac.count(`SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 1 {
		t.Fatalf("the note did not reach the facility before the failure")
	}
	for i := range 5 {
		fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, ?, 0.5)`,
			ids.Random(), f.dataset, f.learner, "week-"+string(rune('a'+i)))
	}
	fac.export(filepath.Join(stick, BundleName(old, city.instance())), filepath.Join(stick, ManifestName(city.instance())))
	visitStick(t, stick, city, city.db) // imports the week, writes its bundle for the facility's manifest on the stick
	return stick, fac, city, backup, old, note
}
