package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A field worker's laptop exchanges, and the stick now holds its week of
// work in the bundles it wrote. Before any other device visits the stick,
// the laptop's disk fails and its database is restored from last week's
// copy. The bundles on the stick signed as its own, of transfers the
// restored file never made, hold the week's work, which may be on no
// other device: its first exchange imports them (taking a new instance,
// as their counters of its instance are above its own) instead of
// skipping them as its own and removing or replacing them.
func TestRestoredDeviceKeepsWorkItsOwnBundlesStillCarry(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 1, 1)
	stick := filepath.Join(f.dir, "stick")
	if err := os.Mkdir(stick, 0o755); err != nil {
		t.Fatal(err)
	}
	visit := func(a *appDB, cert string) result {
		t.Helper()
		return ok(t, "exchange", "--db", a.path, "--cert", cert, stick)
	}
	for range 2 {
		visit(f.fac, f.root)
		visit(f.city, f.cityCert)
	}
	backup := filepath.Join(f.dir, "city.backup")
	f.city.exec(`VACUUM INTO ?`, backup)

	f.city.exec(`INSERT INTO adminnote (id, dataset_id, body) VALUES ('a0000009000000000000000000000000', ?, 'week of work')`, f.root)
	if r := visit(f.city, f.cityCert); !strings.Contains(r.stdout, "exported") {
		t.Fatalf("the week's work was not exported: %s", r)
	}

	// The disk fails; last week's copy is put back in its place.
	f.city.db.Close()
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.city.path + "-wal", f.city.path + "-shm"} {
		os.Remove(p)
	}
	if err := os.WriteFile(f.city.path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f.city = openApp(t, f.city.path)

	for range 2 {
		visit(f.city, f.cityCert)
		visit(f.fac, f.root)
	}
	for name, a := range map[string]*appDB{"school": f.fac, "restored laptop": f.city} {
		if n := a.count(`SELECT count(*) FROM adminnote WHERE body = 'week of work'`); n != 1 {
			t.Errorf("%s holds %d copies of the week of work the stick carried when the laptop was restored", name, n)
		}
	}
}
