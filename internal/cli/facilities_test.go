package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One stick travels between two schools (a district officer's stick, or a
// teacher who works in both), and each school's devices visit the same
// folder. The other school's manifests and bundles root in a certificate a
// device does not trust: they are skipped, named as another facility's,
// and the exchange succeeds; within each school the data still moves.
func TestStickSharedByTwoFacilities(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 1, 2)
	stick := filepath.Join(f.dir, "stick")
	if err := os.Mkdir(stick, 0o755); err != nil {
		t.Fatal(err)
	}
	other := newApp(t, f.dir, "other")
	ok(t, "init", "--db", other.path, "--profile", f.profile)
	otherRoot := strings.Fields(ok(t, "cert", "root", "--db", other.path, "--scope", "full-facility").stdout)[0]
	seed(other, otherRoot, 1, 1)
	visits := []struct {
		db   *appDB
		cert string
	}{{f.fac, f.root}, {other, otherRoot}, {f.city, f.cityCert}, {other, otherRoot}, {f.fac, f.root}, {f.city, f.cityCert}}
	for i, v := range visits {
		r := ok(t, "exchange", "--db", v.db.path, "--cert", v.cert, stick)
		if i > 0 && !strings.Contains(r.stdout+r.stderr, "another facility") {
			t.Errorf("visit %d: the other school's files are not named as another facility's:\n%s", i, r)
		}
	}
	if d := differ(f.fac.dump(appTables), f.city.dump(appTables)); d != "" {
		t.Errorf("the school's two devices differ after sharing the stick with another school: %s", d)
	}
	var n int
	if err := other.db.QueryRow(`SELECT count(*) FROM facilityuser WHERE dataset_id <> ?`, otherRoot).Scan(&n); err != nil || n != 0 {
		t.Errorf("the other school holds %d users of another facility (%v)", n, err)
	}
}

// A stick serves two schools; the second school's laptop is handed the
// first school's request file (the teacher picked the wrong one) and
// grants it with its own root. The request's scope is not within that
// root's: the grant is refused, with a hint to grant it on a device of the
// facility the request names, and no chain is written.
func TestGrantOfAnotherFacilitysRequestSaysWhatToDo(t *testing.T) {
	f := setup(t)
	other := newApp(t, f.dir, "other")
	ok(t, "init", "--db", other.path, "--profile", f.profile)
	otherRoot := strings.Fields(ok(t, "cert", "root", "--db", other.path, "--scope", "full-facility").stdout)[0]
	tablet := newApp(t, f.dir, "tablet")
	ok(t, "init", "--db", tablet.path, "--profile", f.profile)
	req := filepath.Join(f.dir, "tablet.request")
	ok(t, "cert", "request", "--db", tablet.path, "--scope", "single-user", "--param", "dataset_id="+f.root,
		"--param", "user_id=b0000000000000000000000000000001", "-o", req)

	r := morango(t, "cert", "grant", "--db", other.path, "--parent", otherRoot, req, "-o", filepath.Join(f.dir, "tablet.chain"))
	if r.code != 1 || !hasHint(r.stderr) {
		t.Errorf("grant of a request outside the parent's scope: want exit 1 and a hint saying what to do: %s", r)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "tablet.chain")); err == nil {
		t.Errorf("a refused grant wrote a chain")
	}
}
