package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

type conflictView struct {
	Model string
	ID    string
	Shown struct {
		Version string
		Data    map[string]any
	}
	Lost []struct {
		Version string
		Data    map[string]any
		Differs []string
	}
}

func conflictsOf(t *testing.T, db string) []conflictView {
	t.Helper()
	var l []conflictView
	r := ok(t, "conflicts", "--db", db, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatalf("conflicts --json: %v\n%s", err, r)
	}
	return l
}

// Two devices edit the same user before hearing from each other. After they
// exchange bundles both list the same conflict, with the same version shown;
// one device keeps the losing version with resolve, and after the next
// bundle both hold it and no conflict is left.
func TestConflictsAndResolve(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 2, 1)
	b1 := filepath.Join(f.dir, "1.bundle")
	ok(t, "export", "--db", f.fac.path, "--cert", f.root, "-o", b1, "--quiet")
	ok(t, "import", "--db", f.city.path, b1, "--quiet")

	f.fac.exec(`UPDATE facilityuser SET full_name = 'Ann Lee' WHERE username = 'learner0'`)
	f.city.exec(`UPDATE facilityuser SET full_name = 'Anne Leigh' WHERE username = 'learner0'`)
	b2, b3 := filepath.Join(f.dir, "2.bundle"), filepath.Join(f.dir, "3.bundle")
	ok(t, "export", "--db", f.fac.path, "--cert", f.root, "-o", b2, "--quiet")
	ok(t, "export", "--db", f.city.path, "--cert", f.cityCert, "-o", b3, "--quiet")
	ok(t, "import", "--db", f.fac.path, b3, "--quiet")
	ok(t, "import", "--db", f.city.path, b2, "--quiet")

	fc, cc := conflictsOf(t, f.fac.path), conflictsOf(t, f.city.path)
	if len(fc) != 1 || len(cc) != 1 {
		t.Fatalf("want one conflict on each device, got %d and %d", len(fc), len(cc))
	}
	c := fc[0]
	if c.Model != "facilityuser" || len(c.Lost) != 1 || c.Shown.Version != cc[0].Shown.Version || c.Lost[0].Version != cc[0].Lost[0].Version {
		t.Fatalf("the devices list different conflicts:\n%+v\n%+v", c, cc[0])
	}
	names := map[string]bool{c.Shown.Data["full_name"].(string): true, c.Lost[0].Data["full_name"].(string): true}
	if !names["Ann Lee"] || !names["Anne Leigh"] {
		t.Fatalf("the versions do not hold both edits: %+v", c)
	}
	if strings.Join(c.Lost[0].Differs, ",") != "full_name" {
		t.Errorf("differs: %v, want [full_name]", c.Lost[0].Differs)
	}
	shown := c.Shown.Data["full_name"]
	if got := f.fac.count(`SELECT count(*) FROM facilityuser WHERE full_name = ?`, shown); got != 1 {
		t.Errorf("the app does not show the winner %v", shown)
	}
	r := ok(t, "conflicts", "--db", f.city.path)
	if !strings.Contains(r.stdout, "differs in: [full_name]") || !strings.Contains(r.stdout, "morango resolve --db") {
		t.Errorf("conflicts listing: %s", r)
	}

	// Mistakes are refused with a hint and change nothing.
	before := f.city.state()
	for _, args := range [][]string{
		{"--record", c.ID, "--keep", "nonsense"},
		{"--record", c.ID, "--keep", c.Lost[0].Version + "0"},
		{"--record", strings.Repeat("f", 32), "--keep", c.Lost[0].Version},
	} {
		if r := morango(t, append([]string{"resolve", "--db", f.city.path}, args...)...); r.code != 1 || !hasHint(r.stderr) {
			t.Errorf("resolve %v: want exit 1 with a hint: %s", args, r)
		}
	}
	if d := differ(before, f.city.state()); d != "" {
		t.Fatalf("a refused resolve changed %s", d)
	}

	// City keeps the version that lost; an 8-character instance prefix
	// will do, and the counter may be left out when the record holds one
	// version of that instance.
	inst, _, _ := strings.Cut(c.Lost[0].Version, ":")
	ok(t, "resolve", "--db", f.city.path, "--record", c.ID, "--keep", inst[:8])
	lost := c.Lost[0].Data["full_name"]
	if got := f.city.count(`SELECT count(*) FROM facilityuser WHERE full_name = ?`, lost); got != 1 {
		t.Fatalf("the app row does not hold the kept version %v", lost)
	}
	if l := conflictsOf(t, f.city.path); len(l) != 0 {
		t.Fatalf("conflicts left after resolve: %+v", l)
	}
	if r := morango(t, "resolve", "--db", f.city.path, "--record", c.ID, "--keep", c.Lost[0].Version); r.code != 1 ||
		!strings.Contains(r.stderr, "no conflicting versions") {
		t.Errorf("resolving twice: %s", r)
	}

	// The decision travels.
	b4 := filepath.Join(f.dir, "4.bundle")
	ok(t, "export", "--db", f.city.path, "--cert", f.cityCert, "-o", b4, "--quiet")
	ok(t, "import", "--db", f.fac.path, b4, "--quiet")
	if l := conflictsOf(t, f.fac.path); len(l) != 0 {
		t.Fatalf("conflicts left on the other device: %+v", l)
	}
	if d := differ(f.fac.dump(appTables), f.city.dump(appTables)); d != "" {
		t.Fatalf("the app rows differ after the decision travelled: %s", d)
	}
}
