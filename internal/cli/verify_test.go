package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/morango-sync/morango/internal/school"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

// runVerify runs the verify command, registered or not, and returns its
// output, error and exit code.
func runVerify(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	app := newApp(&o, &e)
	if app.Command("verify") == nil {
		app.Commands = append(app.Commands, verifyCommand())
	}
	err := app.RunContext(context.Background(), append([]string{"morango", "verify"}, args...))
	code = ExitCode(context.Background(), err, &e)
	return o.String(), e.String(), code
}

type verifyDoc struct {
	Problems []store.VerifyProblem `json:"problems"`
	Path     string                `json:"path"`
	Profile  string                `json:"profile"`
	Records  int64                 `json:"records"`
	Errors   int64                 `json:"errors"`
	Notices  int64                 `json:"notices"`
	OK       bool                  `json:"ok"`
}

func verifyJSONOf(t *testing.T, db string) (verifyDoc, int) {
	t.Helper()
	stdout, stderr, code := runVerify(t, "--db", db, "--json")
	var d verifyDoc
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("verify --json: %v\n%s\n%s", err, stdout, stderr)
	}
	return d, code
}

// verifySchoolDB is a database of the sample school, initialized and serialized,
// closed.
func verifySchoolDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "school.sqlite3")
	app, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if _, err := app.Exec(school.Schema()); err != nil {
		t.Fatal(err)
	}
	if _, err := school.Generate(ctx, app, "1e2edbeb2ffea72cd7eb943a956a992c", school.Options{Seed: 3, Records: 200}); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(school.ProfileJSON())
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Init(ctx, path, p, &store.Options{SystemID: "verify-test", NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Serialize(ctx); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileSum(t *testing.T, path string) ([32]byte, time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b), fi.ModTime()
}

func TestVerifyCommand(t *testing.T) {
	db := verifySchoolDB(t)
	stdout, stderr, code := runVerify(t, "--db", db)
	if code != ExitOK || !strings.Contains(stdout, "no problems") {
		t.Fatalf("a clean database: exit %d\n%s%s", code, stdout, stderr)
	}
	d, code := verifyJSONOf(t, db)
	if code != ExitOK || !d.OK || len(d.Problems) != 0 || d.Records == 0 || d.Profile != "facilitydata" {
		t.Fatalf("a clean database, --json: exit %d %+v", code, d)
	}

	// Two rows changed behind change tracking's back, one through the app.
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	for _, q := range []string{
		`INSERT INTO morango_applying (active) VALUES (1)`,
		`UPDATE facility SET name = 'Renamed'`,
		`DELETE FROM contentsessionlog WHERE id = (SELECT min(id) FROM contentsessionlog)`,
		`DELETE FROM morango_applying`,
		`UPDATE lesson SET title = 'Fractions' WHERE id = (SELECT min(id) FROM lesson)`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(db, old, old); err != nil {
		t.Fatal(err)
	}
	sum, mtime := fileSum(t, db)

	stdout, stderr, code = runVerify(t, "--db", db)
	if code != ExitFailure {
		t.Fatalf("exit %d, want %d\n%s%s", code, ExitFailure, stdout, stderr)
	}
	for _, want := range []string{"ERROR  data_mismatch  facility", "ERROR  missing_app_row  contentsessionlog", "notice unserialized  lesson",
		"fix: ", "2 errors, 1 notice", "morango: verify: 2 errors in"} {
		if !strings.Contains(stdout+stderr, want) {
			t.Errorf("output lacks %q:\n%s%s", want, stdout, stderr)
		}
	}
	d, code = verifyJSONOf(t, db)
	if code != ExitFailure || d.OK || d.Errors != 2 || d.Notices != 1 || len(d.Problems) != 3 {
		t.Fatalf("--json: exit %d %+v", code, d)
	}
	for _, p := range d.Problems {
		if p.Problem == "" || p.Fix == "" || p.Model == "" || p.ID == "" {
			t.Errorf("problem lacks a field: %+v", p)
		}
	}
	if s, m := fileSum(t, db); s != sum || !m.Equal(mtime) {
		t.Error("verify changed the database file")
	}

	// A file that is not a database: reported, not changed.
	junk := filepath.Join(t.TempDir(), "junk.sqlite3")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("junk"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(junk, old, old); err != nil {
		t.Fatal(err)
	}
	sum, mtime = fileSum(t, junk)
	if d, code := verifyJSONOf(t, junk); code != ExitFailure || len(d.Problems) != 1 || d.Problems[0].Kind != store.VerifyIntegrity {
		t.Errorf("junk file: exit %d %+v", code, d)
	}
	if s, m := fileSum(t, junk); s != sum || !m.Equal(mtime) {
		t.Error("verify changed the junk file")
	}

	// A missing file is an error with a hint, and is not created.
	missing := filepath.Join(t.TempDir(), "none.sqlite3")
	if _, stderr, code := runVerify(t, "--db", missing); code != ExitFailure || !strings.Contains(stderr, "hint: ") {
		t.Errorf("missing file: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Error("verify created the missing file")
	}
}

// Every device of the demo — exports, imports and exchanges with bundle
// files, a conflict, a deletion and a hard deletion — verifies clean.
func TestVerifyDemoDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes seconds")
	}
	dir := t.TempDir()
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"morango", "demo", "--dir", dir, "--records", "400"}, &out, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, dev := range demoDevices {
		db := filepath.Join(dir, dev, "school.sqlite3")
		d, code := verifyJSONOf(t, db)
		if code != ExitOK || !d.OK || len(d.Problems) != 0 {
			t.Errorf("%s: exit %d, %d errors, %d notices:", dev, code, d.Errors, d.Notices)
			for _, p := range d.Problems {
				t.Errorf("  %s %s %s %s: %s", p.Severity, p.Kind, p.Model, p.ID, p.Problem)
			}
		}
	}
}
