package session

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// TestBackupTakenDuringExportRenewsAfterRestore checks that a database
// restored from a backup taken while an export ran takes a new instance and
// gets back what that export carried. The app backs its database up (VACUUM
// INTO) at the moment the export for the city has recorded its transfer
// session but not yet serialized, and writes a note right after: the export
// serializes it as version (facility, c+1) and leaves it on the stick only,
// in the bundle for the city, which does not come that day. The backup is
// restored (counter c, no note). The bundle is of a transfer the restored
// file knows, but its verified counters hold the facility's instance above
// c: the restored facility must renew (not write its next version under the
// reused counter c+1 and overwrite that bundle), import the bundle, and
// pass the note on to the city.
func TestBackupTakenDuringExportRenewsAfterRestore(t *testing.T) {
	stick := t.TempDir()
	fac, city, f := facilityAnd(t, "city")
	for range 2 {
		visitStick(t, stick, fac, fac.db)
		visitStick(t, stick, city, city.db)
	}
	backup := filepath.Join(t.TempDir(), "backup.sqlite3")
	note := ids.Random()
	took := false
	obs := func(e Event) {
		if took || !e.Push || e.Stage != Serializing || e.Kind != EventStarted {
			return
		}
		took = true
		if _, err := fac.app.Exec(`VACUUM INTO ?`, backup); err != nil {
			t.Fatal(err)
		}
		fac.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'written during the exchange')`, note, f.dataset)
	}
	old := fac.instance()
	r, err := Exchange(t.Context(), fac.db, stick, ExchangeOptions{CertID: fac.cert, Observer: obs})
	if err != nil || !took {
		t.Fatalf("exchange: %v (backup taken: %v)", err, took)
	}
	t.Logf("facility before the failure: %v", describeFiles(r))
	ownBundle := filepath.Join(stick, BundleName(old, city.instance()))
	if !bundleIDs(t, ownBundle)[note] {
		t.Fatalf("the export did not carry the note written during it")
	}

	db, app := restore(t, fac, backup, old)
	if n := count(t, app, `SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 0 {
		t.Fatalf("the backup holds the note")
	}
	if _, err := app.Exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'after the restore')`, ids.Random(), f.dataset); err != nil {
		t.Fatal(err)
	}
	r = visitStick(t, stick, fac, db)
	t.Logf("restored facility: %v", describeFiles(r))
	in, err := db.Instance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if in.ID == old {
		t.Errorf("the restored facility kept its instance %s although its own bundle on the stick holds a version above its counter %d", old[:8], in.Counter)
	}
	if _, err := os.Stat(ownBundle); err == nil && !bundleIDs(t, ownBundle)[note] {
		t.Logf("the bundle that held the note was overwritten by the restored facility's export")
	}
	for range 3 {
		visitStick(t, stick, city, city.db)
		visitStick(t, stick, fac, db)
	}
	if n := city.count(`SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 1 {
		t.Errorf("city: the note the facility wrote during the exchange (it was on the stick) never arrived")
	}
	if n := count(t, app, `SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 1 {
		t.Errorf("facility: the note it wrote during the exchange (it was on the stick) never came back")
	}
}
