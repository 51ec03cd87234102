package session

import (
	"os"
	"path/filepath"
	"testing"
)

// The restored facility's first exchange is with a stick that holds no
// manifest of the city, only a bundle the city wrote for anyone ('morango
// export' without --for, holding the week the facility lost): the import
// of that bundle renews the instance, and the exchange reports the
// renewal and names the manifest and the bundles it writes after the new
// instance.
func TestRenewalDuringExchangeImportNamesFilesByNewInstance(t *testing.T) {
	stick := t.TempDir()
	var tablet *device
	fac, city, _, db, _, old := restoredFacility(t, stick, func(fac, city *device) {
		// Another device, whose manifest makes the facility write a bundle.
		tablet = newDevice(t, "tablet")
		grant(t, fac, tablet, "full-facility", map[string]string{"dataset_id": fac.cert})
	})
	other := t.TempDir()
	city.export(filepath.Join(other, "city-for-anyone.bundle"), "")
	tablet.manifest(filepath.Join(other, ManifestName(tablet.instance())))

	r := visitStick(t, other, fac, db)
	in, err := db.Instance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if in.ID == old {
		t.Fatalf("the import did not renew the restored database")
	}
	if r.Instance != in.ID || r.Renewed != old {
		t.Errorf("exchange result: instance %s, renewed %q; the database is now %s, renewed from %s", r.Instance[:8], r.Renewed, in.ID[:8], old[:8])
	}
	if _, err := os.Stat(filepath.Join(other, ManifestName(in.ID))); err != nil {
		t.Errorf("no manifest under the current instance's name: %v (files: %v)", err, describeFiles(r))
	}
	if _, err := os.Stat(filepath.Join(other, ManifestName(old))); err == nil {
		t.Errorf("a manifest under the former instance's name %s was written after the renewal", old[:8])
	}
	if _, err := os.Stat(filepath.Join(other, BundleName(old, tablet.instance()))); err == nil {
		t.Errorf("a bundle from the new instance is named as one from the former instance %s", old[:8])
		visitStick(t, other, tablet, tablet.db)
		visitStick(t, other, fac, db)
		if _, err := os.Stat(filepath.Join(other, BundleName(old, tablet.instance()))); err == nil {
			t.Errorf("... and the next exchanges of both leave it on the stick (the facility now writes and removes only %s)", BundleName(in.ID, tablet.instance())[:8]+"...")
		}
	}
}
