package session

import (
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// The manual visit, as 'morango exchange' does it: the facility writes
// its manifest (its app has a change not serialized yet), then its bundle
// for the city's manifest ('morango export --for'); the city imports it,
// and writes its bundle for the facility's manifest. The manifest
// serializes first, so it counts the change, and the city sends nothing
// of the facility's own back to it.
func TestManualManifestThenExportSendsNothingBack(t *testing.T) {
	dir := t.TempDir()
	fac, city, f := facilityAnd(t, "city")
	// In step: each holds what the other has.
	fac.sendTo(city, dir, true)
	city.sendTo(fac, dir, true)
	if n, _ := fac.sendTo(city, dir, true); n != 0 {
		t.Fatalf("setup: the city still lacks %d records", n)
	}
	if n, _ := city.sendTo(fac, dir, true); n != 0 {
		t.Fatalf("setup: the facility still lacks %d records", n)
	}

	fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'c-new', 0.5)`,
		ids.Random(), f.dataset, f.learner)
	facManifest := filepath.Join(dir, "facility.manifest")
	fac.manifest(facManifest)
	cityManifest := filepath.Join(dir, "city.manifest")
	city.manifest(cityManifest)
	toCity := filepath.Join(dir, "facility-to-city.bundle")
	if r := fac.export(toCity, cityManifest); r.Records != 1 {
		t.Fatalf("facility's bundle for the city holds %d records, want the new log", r.Records)
	}
	city.mustImport(toCity)

	if r := city.export(filepath.Join(dir, "city-to-facility.bundle"), facManifest); r.Records != 0 {
		t.Errorf("the city's bundle for the facility's manifest holds %d records (%v): the facility's own new log, which it wrote after its manifest was read but before its bundle, goes back to it",
			r.Records, r.Counts)
	}
}
