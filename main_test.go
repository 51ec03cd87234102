package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/morango-sync/morango/internal/school"
)

// TestREADMEWalkthrough runs the README's walkthrough commands, in order,
// with the real binary, on two databases of the sample app.
func TestREADMEWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) != 3 {
		t.Fatalf("README has %d sh blocks, the walkthrough has 3", len(blocks))
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "morango"), ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx := context.Background()
	open := func(name string) *sql.DB {
		db, err := sql.Open("sqlite", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	laptop, tablet := open("school.sqlite3"), open("tablet.sqlite3")
	for _, db := range []*sql.DB{laptop, tablet} {
		if _, err := db.Exec(school.Schema()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "profile.json"), school.ProfileJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "stick"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	run := func(script string, extra ...string) string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script+"\necho \"ROOT=${ROOT:-} TABLET=${TABLET:-}\"")
		cmd.Dir, cmd.Env = dir, append(env, extra...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("walkthrough step failed: %v\n%s\n%s", err, script, out)
		}
		return string(out)
	}
	vars := func(out string) map[string]string {
		m := map[string]string{}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, f := range strings.Fields(lines[len(lines)-1]) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		return m
	}

	root := vars(run(blocks[0][1]))["ROOT"]
	if len(root) != 32 {
		t.Fatalf("root id %q", root)
	}
	// The app records the facility's data under the root's id.
	sum, err := school.Generate(ctx, laptop, root, school.Options{Seed: 3, Records: 500})
	if err != nil {
		t.Fatal(err)
	}
	learner := sum.LearnerIDs[0]
	tab := vars(run(blocks[1][1], "ROOT="+root, "LEARNER="+learner))["TABLET"]
	if len(tab) != 32 {
		t.Fatalf("tablet certificate %q", tab)
	}
	out := run(blocks[2][1], "ROOT="+root, "TABLET="+tab, "LEARNER="+learner)
	if !strings.Contains(out, "imported") || !strings.Contains(out, "exported") {
		t.Errorf("the visits moved nothing:\n%s", out)
	}
	// The tablet holds its learner's logs and nobody else's.
	var mine, others int
	if err := tablet.QueryRow(`SELECT count(*) FROM contentsessionlog WHERE user_id = ?`, learner).Scan(&mine); err != nil {
		t.Fatal(err)
	}
	if err := tablet.QueryRow(`SELECT count(*) FROM contentsessionlog WHERE user_id <> ?`, learner).Scan(&others); err != nil {
		t.Fatal(err)
	}
	if mine == 0 || others != 0 {
		t.Errorf("tablet holds %d of its learner's logs and %d of others'", mine, others)
	}
}
