package session

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// TestRestoredRetireKeepsUnimportedBundleForFormerInstance: the city
// writes a note and leaves it on the stick only in its bundle for the
// facility (addressed to the facility's instance then), and does not come
// back (a tablet lost, a device that visits once a term). The facility is
// restored from a backup. Its first exchange renews (the city's manifest
// holds its instance above the backup) and tries to import the city's
// bundle, which fails (the stick is pulled out while it is read). Retiring
// the former instance must not remove that bundle: the next exchange
// imports it, as it would for a database that was not restored.
func TestRestoredRetireKeepsUnimportedBundleForFormerInstance(t *testing.T) {
	stick := t.TempDir()
	note := ids.Random()
	var toFormer string
	fac, city, _, db, app, old := restoredFacility(t, stick, func(fac, city *device) {
		city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES (?, (SELECT id FROM facilitydataset), 'only on the stick')`, note)
		visitStick(t, stick, city, city.db)
		toFormer = BundleName(city.instance(), fac.instance())
	})
	if _, err := os.Stat(filepath.Join(stick, toFormer)); err != nil {
		t.Fatalf("no bundle of the city for the facility on the stick: %v", err)
	}
	// Openings of the city's bundle: the folder scan (whose header read
	// serves the bundle loop too), the import's header and digest, then
	// its verifying pass, which fails.
	fs := &failNthOpenFS{part: toFormer, nth: 3}
	r, err := Exchange(t.Context(), db, stick, ExchangeOptions{CertID: fac.cert, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored facility, first exchange: %v", describeFiles(r))
	if r.Renewed != old {
		t.Fatalf("the exchange did not renew: %+v", r)
	}
	_, statErr := os.Stat(filepath.Join(stick, toFormer))
	for range 2 {
		visitStick(t, stick, fac, db) // the city does not come back
	}
	if n := count(t, app, `SELECT count(*) FROM adminnote WHERE id = ?`, note); n != 1 {
		t.Errorf("facility: the city's note, on the stick only in its bundle for the former instance, never arrived "+
			"(its import failed once; the bundle after that exchange: %v)", statErr)
	}
	_ = city
}
