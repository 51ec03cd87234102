package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/morango-sync/morango/profile"
)

// A database whose sync tables a newer morango has upgraded is refused by
// init as by every other command, and left as it was: init must not
// replace the newer version's profile and triggers, or mark every app row
// changed, before it finds that it cannot open the database.
func TestInitRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "newer")
	d.init(ctx)
	d.exec(`INSERT INTO dataset (id, name) VALUES (?, 'D')`, dsID)
	d.serialize(ctx)
	d.db.Close()
	d.exec(`UPDATE morango_schema SET version = ?`, currentSchemaVersion+1)
	d.exec(`UPDATE morango_profile SET installed_at = 'by a newer morango'`)
	d.exec(`CREATE TRIGGER morango_dataset_newer AFTER UPDATE ON dataset BEGIN SELECT 1; END`)
	triggers := func() string {
		var s string
		if err := d.app.QueryRow(`SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := triggers()

	p, err := profile.Parse([]byte(testProfile))
	if err != nil {
		t.Fatal(err)
	}
	db, err := Init(ctx, d.path, p, &Options{SystemID: "sys-newer", NodeID: "node"})
	if err == nil {
		db.Close()
		t.Fatal("init opened a database whose sync tables are newer than this morango")
	}
	if !strings.Contains(err.Error(), "version") {
		t.Errorf("init's error does not say the sync tables are newer: %v", err)
	}
	if n := d.count(`SELECT count(*) FROM morango_profile WHERE installed_at = 'by a newer morango'`); n != 1 {
		t.Errorf("init replaced the newer version's profile")
	}
	if after := triggers(); after != before {
		t.Errorf("init replaced the newer version's triggers:\nbefore %s\nafter  %s", before, after)
	}
	if n := d.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
		t.Errorf("init marked %d app rows changed", n)
	}
	if n := d.count(`SELECT version FROM morango_schema`); n != currentSchemaVersion+1 {
		t.Errorf("sync tables' version is now %d", n)
	}
}

// openFixture opens a copy of a database an older morango made
// (testdata/README.md says how).
func openFixture(t *testing.T, name string) *DB {
	t.Helper()
	db, err := Open(context.Background(), copyFixture(t, name), &Options{SystemID: "sys-fixture", NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// copyFixture copies a database an older morango made (testdata/README.md
// says how) into a temporary folder and returns the copy's path.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An older morango's init, run on a database a newer one upgraded, drops
// every morango_ trigger before it refuses the newer sync tables, among
// them morango_shown's (schema 6). Without them a snapshot of what the app
// showed outlives the head it was noted for, and a later touch of the row
// is compared with that stale snapshot. Opening the database restores them.
func TestOpenRestoresSyncTableTriggers(t *testing.T) {
	ctx := context.Background()
	db := openFixture(t, "schema6-reinit-by-schema5-build.sqlite3")
	const lesson = "d0000000000000000000000000000001"
	// The lesson's head waits to reach the app; the app showed another
	// title meanwhile.
	if _, err := db.w.ExecContext(ctx, `UPDATE morango_store SET dirty_bit = 1 WHERE id = ?`, lesson); err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.ExecContext(ctx, `INSERT INTO morango_shown (id, serialized) VALUES (?, '{"title":"shown"}')`, lesson); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Deserialize(ctx); err != nil {
		t.Fatal(err)
	}
	var dirty, shown int
	if err := db.w.QueryRowContext(ctx, `SELECT dirty_bit, (SELECT count(*) FROM morango_shown WHERE id = s.id) FROM morango_store s WHERE id = ?`, lesson).Scan(&dirty, &shown); err != nil {
		t.Fatal(err)
	}
	if dirty != 0 {
		t.Fatalf("the lesson's head did not reach the app")
	}
	if shown != 0 {
		t.Errorf("the head reached the app but the snapshot noted while it waited is still there (the sync tables' triggers are missing)")
	}
}

// verify, which reads only, reports the sync tables' triggers an older
// morango's init dropped, and how to restore them. (The fixture's sync
// tables are otherwise as the current version has them, which verify
// requires: later versions add no table or trigger.)
func TestVerifyReportsMissingSyncTableTriggers(t *testing.T) {
	path := copyFixture(t, "schema6-reinit-by-schema5-build.sqlite3")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = raw.Exec(`UPDATE morango_schema SET version = ?`, currentSchemaVersion)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	var found []VerifyProblem
	if _, err := Verify(context.Background(), path, func(p VerifyProblem) error {
		if p.Kind == VerifyTriggers {
			found = append(found, p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || !strings.Contains(found[0].Problem, "morango_shown_written") || found[0].Severity != SeverityError {
		t.Errorf("verify does not report the missing triggers of morango_store: %+v", found)
	}
}
