package session

import (
	"path/filepath"
	"testing"
)

// The restored facility's first contact is the manual flow: 'morango
// manifest' (what the restored file holds, under the former instance, with
// nothing on the stick to show the restore), the city's 'export --for' it,
// then 'morango import'. The import renews; the bundle, addressed to the
// former instance, was computed against the restored file's own holdings
// (its header's peer counters say so), so its counters are claimed and
// the city's next bundle for the facility holds nothing again.
func TestRestoredManualFlowClaimsBundleComputedAfterRestore(t *testing.T) {
	stick := t.TempDir()
	fac, city, _, db, app, old := restoredFacility(t, stick, nil)
	dir := t.TempDir()
	m := filepath.Join(dir, "facility.manifest")
	if _, err := WriteManifest(t.Context(), db, nil, m, ManifestOptions{CertID: fac.cert}); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "city-to-facility.bundle")
	sent := city.export(b, m)
	r, err := Import(t.Context(), db, &DiskConnection{Bundle: b}, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := db.Instance(t.Context()); in.ID == old {
		t.Fatalf("the import did not renew")
	}
	if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
		t.Fatalf("facility: %d of the 5 logs of the lost week arrived", n)
	}
	m2 := filepath.Join(dir, "facility2.manifest")
	if _, err := WriteManifest(t.Context(), db, nil, m2, ManifestOptions{CertID: fac.cert}); err != nil {
		t.Fatal(err)
	}
	if again := city.export(filepath.Join(dir, "again.bundle"), m2); again.Records != 0 {
		t.Errorf("the city's next bundle for the facility sends %d records again (the first sent %d; for_other %q, claims %v)",
			again.Records, sent.Records, r.ForOther, r.Store.Claims)
	}
}
