package store

import (
	"context"
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
