package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// Someone who mistypes -o so that it names the database (tab completion
// of "school.<TAB>", or -o and --db swapped in a script) would lose the
// whole database if export, manifest, cert request or cert grant wrote
// their file over it. Every command that writes a file refuses a target that is the database it works on (or any SQLite
// file) before it does any work, and leaves the database as it was.
func TestOutputOverTheDatabaseIsRefused(t *testing.T) {
	for _, cmd := range []string{"export", "manifest", "cert grant", "cert request"} {
		t.Run(strings.ReplaceAll(cmd, " ", "_"), func(t *testing.T) {
			f := setup(t)
			seed(f.fac, f.root, 1, 2)
			request := filepath.Join(f.dir, "x.request")
			ok(t, "cert", "request", "--db", f.city.path, "--scope", "full-facility", "--param", "dataset_id="+f.root, "-o", request)
			args := map[string][]string{
				"export":       {"export", "--db", f.fac.path, "--cert", f.root, "--quiet", "-o", f.fac.path},
				"manifest":     {"manifest", "--db", f.fac.path, "--cert", f.root, "-o", f.fac.path},
				"cert grant":   {"cert", "grant", "--db", f.fac.path, "--parent", f.root, request, "-o", f.fac.path},
				"cert request": {"cert", "request", "--db", f.fac.path, "--scope", "full-facility", "--param", "dataset_id=" + f.root, "-o", f.fac.path},
			}[cmd]
			before := f.fac.state()
			r := morango(t, args...)
			if r.code == 0 {
				t.Errorf("%v with -o naming its own database: exit 0, want a refusal: %s", args[:2], r)
			}
			if s := morango(t, "status", "--db", f.fac.path); s.code != 0 {
				t.Fatalf("after %v the database is gone: %s", args[:2], s)
			}
			if d := differ(before, f.fac.state()); d != "" {
				t.Errorf("%v changed %s", args[:2], d)
			}
		})
	}
}
