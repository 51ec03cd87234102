package session

import (
	"testing"

	"github.com/morango-sync/morango/ids"
)

// A tablet's app writes rows before the tablet holds any certificate (it
// records the facility's dataset and its learner while being set up, and a
// note it may never write), and they are serialized (`morango serialize`
// does it without a certificate). Then the tablet gets a single-user
// certificate. Those versions lie outside what it may write: they could
// never leave it, and they would compete there with the facility's, so
// the tablet would show its own data for good. Taking its first
// certificate turns them back into changes that wait with their reason,
// as changes made after the certificate do (TestChangesOutsideWriteScopeWait):
// the facility's versions replace them, and the learner's own work still
// goes out.
func TestVersionsWrittenBeforeCertificateConverge(t *testing.T) {
	dir := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	home := newDevice(t, "home")
	note, log := ids.Random(), ids.Random()
	home.exec(`INSERT INTO facilitydataset (id, description) VALUES (?, 'tablet copy')`, f.dataset)
	home.exec(`INSERT INTO facilityuser (id, dataset_id, username) VALUES (?, ?, 'ana-tablet')`, f.learner, f.dataset)
	home.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, ?, 'not mine to write')`, note, f.dataset)
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c7', 0.25)`, log, f.dataset, f.learner)
	// The app edits them a few times, each edit serialized: the tablet's
	// counter passes the facility's, so its versions would win the
	// tie-break.
	for i := range 3 {
		home.exec(`UPDATE facilitydataset SET description = 'tablet copy ' || ? WHERE id = ?`, i, f.dataset)
		home.exec(`UPDATE facilityuser SET username = 'ana-tablet ' || ? WHERE id = ?`, i, f.learner)
		if _, err := home.db.Serialize(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	for _, id := range []string{f.dataset, f.learner, note} {
		if n := home.count(`SELECT count(*) FROM morango_store WHERE id = ?`, id); n != 0 {
			t.Errorf("home: record %s made before the certificate, outside its write scope, is still a version", id[:8])
		}
	}
	if _, err := home.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE error LIKE 'this device may not write%'`); n != 3 {
		t.Errorf("home: %d changes wait with their reason, want the dataset's, the learner's and the note's", n)
	}
	if n := home.count(`SELECT count(*) FROM morango_store WHERE id = ?`, log); n != 1 {
		t.Errorf("home: the learner's own log, made before the certificate, lost its version")
	}
	for range 2 {
		fac.sendTo(home, dir, true)
		home.sendTo(fac, dir, true)
	}
	for _, q := range []struct{ sql, id string }{
		{`SELECT description FROM facilitydataset WHERE id = ?`, f.dataset},
		{`SELECT username FROM facilityuser WHERE id = ?`, f.learner},
		{`SELECT progress FROM contentlog WHERE id = ?`, log},
	} {
		var a, b string
		fac.app.QueryRow(q.sql, q.id).Scan(&a)
		home.app.QueryRow(q.sql, q.id).Scan(&b)
		if a != b || a == "" {
			t.Errorf("%s: facility %q, home %q", q.sql, a, b)
		}
	}
	if n := home.count(`SELECT count(*) FROM morango_store WHERE conflicting_serialized_data <> ''`); n != 0 {
		t.Errorf("home: %d records with conflicting versions", n)
	}
	if n := fac.count(`SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 0 {
		t.Errorf("facility: the tablet's note arrived")
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ?`, note); n != 1 {
		t.Errorf("home: the note it may not write does not wait")
	}
}
