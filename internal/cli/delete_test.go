package cli_test

import (
	"strings"
	"testing"
)

// 'morango delete' makes hard deletions only. --hard=false, a person
// asking for a soft delete, is refused as a usage error and changes
// nothing, instead of erasing the rows on every device.
func TestDeleteRefusesSoftDelete(t *testing.T) {
	f := setup(t)
	seed(f.fac, f.root, 1, 0)
	ok(t, "serialize", "--db", f.fac.path)
	classroom := "c" + strings.Repeat("0", 31) // seed's classroom
	before := f.fac.state()
	r := morango(t, "delete", "--db", f.fac.path, "--model", "classroom", "--hard=false", classroom)
	if r.code != 2 || !hasHint(r.stderr) || !strings.Contains(r.stderr, "soft") {
		t.Errorf("delete --hard=false: want exit 2 and a hint about soft deletes: %s", r)
	}
	if d := differ(before, f.fac.state()); d != "" {
		t.Errorf("delete --hard=false changed %s", d)
	}
	ok(t, "delete", "--db", f.fac.path, "--model", "classroom", "--hard", classroom)
}
