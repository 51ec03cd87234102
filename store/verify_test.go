package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/morango-sync/morango/internal/school"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
)

const verifyDataset = "1e2edbeb2ffea72cd7eb943a956a992c"

// newSchoolDevice is a device of the sample school app in dir, with the
// sync tables installed.
func newSchoolDevice(t *testing.T, dir, name string) *device {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(dir, name+".sqlite3")
	app, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	if _, err := app.Exec(school.Schema()); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(school.ProfileJSON())
	if err != nil {
		t.Fatal(err)
	}
	db, err := Init(ctx, path, p, &Options{SystemID: "sys-" + name, NodeID: "node"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &device{t: t, path: path, app: app, db: db}
}

func (d *device) close() {
	d.t.Helper()
	if err := d.db.Close(); err != nil {
		d.t.Fatal(err)
	}
	if err := d.app.Close(); err != nil {
		d.t.Fatal(err)
	}
}

func (d *device) value(q string, args ...any) string {
	d.t.Helper()
	var s string
	if err := d.app.QueryRow(q, args...).Scan(&s); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
	return s
}

// verifyAll runs Verify and returns every problem it reports.
func verifyAll(t *testing.T, path string) ([]VerifyProblem, *VerifyResult) {
	t.Helper()
	var ps []VerifyProblem
	res, err := Verify(context.Background(), path, func(p VerifyProblem) error {
		ps = append(ps, p)
		return nil
	})
	if err != nil {
		t.Fatalf("verify %s: %v", path, err)
	}
	return ps, res
}

// cleanSchool builds two devices of the school that have exchanged
// everything, edits, a conflict, a deletion and a hard deletion included,
// closes them and returns their files and ids of some of their rows.
func cleanSchool(t *testing.T) (a, b string, rows map[string]string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	fac := newSchoolDevice(t, dir, "facility")
	if _, err := school.Generate(ctx, fac.app, verifyDataset, school.Options{Seed: 7, Records: 300}); err != nil {
		t.Fatal(err)
	}
	fac.serialize(ctx)
	city := newSchoolDevice(t, dir, "city")
	filter := []string{verifyDataset}
	copyAll(t, fac, city, filter)

	rows = map[string]string{
		"facility":          fac.value(`SELECT id FROM facility`),
		"facilityuser":      fac.value(`SELECT id FROM facilityuser WHERE role = 'learner' ORDER BY id LIMIT 1`),
		"conflicted":        fac.value(`SELECT id FROM facilityuser WHERE role = 'learner' ORDER BY id DESC LIMIT 1`),
		"contentsummarylog": fac.value(`SELECT id FROM contentsummarylog ORDER BY id LIMIT 1`),
		"contentsessionlog": fac.value(`SELECT id FROM contentsessionlog ORDER BY id LIMIT 1`),
		"membership":        fac.value(`SELECT id FROM membership ORDER BY id LIMIT 1`),
	}
	now := time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)
	// The same user edited on both devices: a conflict.
	if err := school.EditRow(ctx, fac.app, "facilityuser", rows["conflicted"], map[string]any{"full_name": "Ann Lee"}, now); err != nil {
		t.Fatal(err)
	}
	if err := school.EditRow(ctx, city.app, "facilityuser", rows["conflicted"], map[string]any{"full_name": "Anne Leigh"}, now); err != nil {
		t.Fatal(err)
	}
	// A learner's week at the city, a deletion and a hard deletion at the
	// facility.
	if err := school.LearnerWeek(ctx, city.app, verifyDataset, rows["facilityuser"], 5, 1, now); err != nil {
		t.Fatal(err)
	}
	fac.exec(`DELETE FROM contentsessionlog WHERE id = (SELECT id FROM contentsessionlog ORDER BY id DESC LIMIT 1)`)
	if err := fac.db.HardDelete(ctx, "contentsessionlog", fac.value(`SELECT id FROM contentsessionlog ORDER BY id DESC LIMIT 1`)); err != nil {
		t.Fatal(err)
	}
	fac.serialize(ctx)
	city.serialize(ctx)
	copyAll(t, city, fac, filter)
	copyAll(t, fac, city, filter)
	if n := fac.count(`SELECT count(*) FROM morango_store WHERE conflicting_serialized_data <> ''`); n == 0 {
		t.Fatal("the scenario made no conflict")
	}
	fac.close()
	city.close()
	return fac.path, city.path, rows
}

// fileState is what Verify must not change: the file's bytes and mtime.
type fileState struct {
	sum   [32]byte
	mtime time.Time
}

func stateOfFile(t *testing.T, path string) fileState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{sha256.Sum256(b), fi.ModTime()}
}

func kinds(ps []VerifyProblem, sev Severity) []VerifyKind {
	var ks []VerifyKind
	for _, p := range ps {
		if p.Severity == sev && !slices.Contains(ks, p.Kind) {
			ks = append(ks, p.Kind)
		}
	}
	slices.Sort(ks)
	return ks
}

func TestVerifyCleanAfterExchange(t *testing.T) {
	a, b, _ := cleanSchool(t)
	for _, path := range []string{a, b} {
		before := stateOfFile(t, path)
		ps, res := verifyAll(t, path)
		if len(ps) != 0 {
			t.Errorf("%s: a clean database has problems:\n%v", filepath.Base(path), ps)
		}
		if !res.OK() || res.Records == 0 || res.AppRows == 0 || res.Profile != "facilitydata" {
			t.Errorf("%s: result %+v", filepath.Base(path), res)
		}
		if stateOfFile(t, path) != before {
			t.Errorf("%s: verify changed the file", filepath.Base(path))
		}
	}
}

// Each case breaks one invariant of a copy of a clean database with raw
// SQL; Verify must report exactly that problem, and leave the file as it
// was.
func TestVerifyReportsEachBrokenInvariant(t *testing.T) {
	clean, _, rows := cleanSchool(t)
	cleanBytes, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	fac, user, sum, sess, memb := rows["facility"], rows["facilityuser"], rows["contentsummarylog"], rows["contentsessionlog"], rows["membership"]
	foreign := strings.Repeat("f", 32)
	badSibling := merge.EncodeSiblings([]merge.Version{{Instance: foreign, Counter: 3, Serialized: `{"name":"x"}`}})
	otherUser := strings.Repeat("9", 32)
	untracked := func(stmts ...string) []string {
		return append(append([]string{`INSERT INTO morango_applying (active) VALUES (1)`}, stmts...), `DELETE FROM morango_applying`)
	}
	cases := []struct {
		name    string
		sql     []string
		corrupt func(path string)
		errors  []VerifyKind
		notices []VerifyKind
		id      string // the id the first error names
		fix     string // what the fix of the first problem says
	}{
		{name: "damaged file", corrupt: func(path string) {
			b, _ := os.ReadFile(path)
			for i := 3 * 4096; i < 5*4096 && i < len(b); i++ {
				b[i] = 0xA5
			}
			os.WriteFile(path, b, 0o644)
		}, errors: []VerifyKind{VerifyIntegrity}},
		{name: "not a database", corrupt: func(path string) {
			os.WriteFile(path, bytes.Repeat([]byte("not sqlite "), 1000), 0o644)
		}, errors: []VerifyKind{VerifyIntegrity}},
		{name: "unknown schema version", sql: []string{`UPDATE morango_schema SET version = 99`}, errors: []VerifyKind{VerifySchema}},
		{name: "no sync tables", sql: []string{`DROP TABLE morango_schema`}, errors: []VerifyKind{VerifySchema}},
		{name: "foreign key", sql: []string{`PRAGMA foreign_keys = OFF`, `DELETE FROM facility`},
			errors: []VerifyKind{VerifyForeignKey}, notices: []VerifyKind{VerifyUnserialized}},
		{name: "no current instance", sql: []string{`UPDATE morango_instanceid SET current = 0`}, errors: []VerifyKind{VerifyInstance}},
		{name: "trigger dropped", sql: []string{`DROP TRIGGER morango_facility_update`}, errors: []VerifyKind{VerifyTriggers}},
		{name: "tracking left off", sql: []string{`INSERT INTO morango_applying (active) VALUES (1)`}, errors: []VerifyKind{VerifyTrackingStopped}},
		{name: "record of another profile", sql: []string{`UPDATE morango_store SET profile = 'other' WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyWrongProfile}, id: fac},
		{name: "record of an unknown model", sql: []string{`UPDATE morango_store SET model_name = 'ghost' WHERE id = '` + sess + `'`},
			errors: []VerifyKind{VerifyModelMismatch}, notices: []VerifyKind{VerifyUnknownModel}, id: sess},
		{name: "id not hex", sql: untracked(
			`UPDATE contentsessionlog SET id = 'XYZ' WHERE id = '`+sess+`'`,
			`UPDATE morango_store SET id = 'XYZ', serialized = json_set(serialized, '$.id', 'XYZ') WHERE id = '`+sess+`'`,
			`UPDATE morango_recordmaxcounter SET store_model_id = 'XYZ' WHERE store_model_id = '`+sess+`'`),
			errors: []VerifyKind{VerifyBadID}, id: "XYZ"},
		{name: "id not the namespaced id", sql: []string{`UPDATE morango_store SET source_id = 'nope' WHERE id = '` + sum + `'`},
			errors: []VerifyKind{VerifyIDMismatch}, id: sum},
		{name: "partition outside the model's", sql: []string{`UPDATE morango_store SET partition = '` + verifyDataset + `:user-ro:` + otherUser + `' WHERE id = '` + user + `'`},
			errors: []VerifyKind{VerifyPartitionMismatch}, id: user},
		{name: "partition of another dataset", sql: []string{`UPDATE morango_store SET partition = 'elsewhere' WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyPartitionMismatch}, id: fac},
		{name: "data not JSON", sql: []string{`UPDATE morango_store SET serialized = 'not json' WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyBadData}, id: fac},
		{name: "erased record keeps data", sql: []string{`UPDATE morango_store SET hard_deleted = 1 WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyBadData}, id: fac},
		{name: "version without counter", sql: []string{`UPDATE morango_store SET last_saved_counter = 0 WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyBadVersion}, id: fac},
		{name: "head missing from history", sql: []string{`DELETE FROM morango_recordmaxcounter WHERE store_model_id = '` + fac + `'`},
			errors: []VerifyKind{VerifyHeadNotInHistory}, id: fac},
		{name: "head above history", sql: []string{`UPDATE morango_store SET last_saved_counter = last_saved_counter + 1 WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyHeadNotInHistory}, id: fac},
		{name: "history entry without counter", sql: []string{`INSERT INTO morango_recordmaxcounter VALUES ('` + fac + `', '` + foreign + `', 0)`},
			errors: []VerifyKind{VerifyBadHistory}, id: fac},
		{name: "history of no record", sql: []string{`INSERT INTO morango_recordmaxcounter VALUES ('` + foreign + `', '` + foreign + `', 1)`},
			errors: []VerifyKind{VerifyOrphanHistory}, id: foreign},
		{name: "siblings unreadable", sql: []string{`UPDATE morango_store SET conflicting_serialized_data = 'garbage' WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyBadSiblings}, id: fac},
		{name: "sibling outside history", sql: []string{`UPDATE morango_store SET conflicting_serialized_data = '` + badSibling + `' WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyBadSiblings}, id: fac},
		{name: "own versions unclaimed", sql: []string{`UPDATE morango_databasemaxcounter SET counter = 1 WHERE instance_id = (SELECT id FROM morango_instanceid WHERE current = 1)`},
			errors: []VerifyKind{VerifyUnclaimed}},
		{name: "others' versions unclaimed", sql: []string{`DELETE FROM morango_databasemaxcounter WHERE instance_id <> (SELECT id FROM morango_instanceid WHERE current = 1)`},
			notices: []VerifyKind{VerifyUnclaimed}},
		{name: "counter behind", sql: []string{`UPDATE morango_instanceid SET counter = 1 WHERE current = 1`},
			errors: []VerifyKind{VerifyCounterBehind}},
		{name: "app row changed untracked", sql: untracked(`UPDATE facility SET name = 'Renamed' WHERE id = '` + fac + `'`),
			errors: []VerifyKind{VerifyDataMismatch}, id: fac},
		{name: "app row inserted untracked", sql: untracked(`INSERT INTO facility (id, dataset_id, name, modified) VALUES ('` + foreign + `', '` + verifyDataset + `', 'Annex', '2026')`),
			errors: []VerifyKind{VerifyMissingRecord}, id: foreign},
		{name: "app row deleted untracked", sql: untracked(`DELETE FROM contentsessionlog WHERE id = '` + sess + `'`),
			errors: []VerifyKind{VerifyMissingAppRow}, id: sess},
		{name: "deleted record keeps app row", sql: []string{`UPDATE morango_store SET deleted = 1 WHERE id = '` + fac + `'`},
			errors: []VerifyKind{VerifyDeletedHasRow}, id: fac},
		{name: "erased record keeps app row", sql: []string{`UPDATE morango_store SET deleted = 1, hard_deleted = 1, serialized = '{}' WHERE id = '` + sess + `'`},
			errors: []VerifyKind{VerifyDeletedHasRow}, id: sess},
		{name: "app row of another model's record", sql: untracked(`INSERT INTO coachnote (id, dataset_id, user_id, author_id, body, modified)
			SELECT '` + sess + `', dataset_id, user_id, user_id, 'x', '2026' FROM contentsessionlog WHERE id = '` + sess + `'`),
			errors: []VerifyKind{VerifyModelMismatch}, id: sess},
		// Allowed states: notices, no errors.
		{name: "unserialized change", sql: []string{`UPDATE facility SET name = 'Renamed' WHERE id = '` + fac + `'`},
			notices: []VerifyKind{VerifyUnserialized}},
		{name: "unserializable change", sql: []string{`INSERT INTO facility (id, dataset_id, name, modified) VALUES ('Annex', '` + verifyDataset + `', 'Annex', '2026')`,
			`UPDATE morango_dirty SET error = 'id must be 32 lower-case hex digits' WHERE id = 'Annex'`},
			notices: []VerifyKind{VerifyUnserializable}, fix: "fix the row through the app"},
		{name: "change outside write scope", sql: []string{`UPDATE facility SET name = 'Renamed' WHERE id = '` + fac + `'`,
			`UPDATE morango_dirty SET error = '` + outsidePrefix + verifyDataset + `: the change stays on this device' WHERE id = '` + fac + `'`},
			notices: []VerifyKind{VerifyUnserializable}, fix: "make the change on a device that may write the partition"},
		{name: "pending record", sql: []string{`UPDATE morango_store SET dirty_bit = 1 WHERE id = '` + fac + `'`},
			notices: []VerifyKind{VerifyPending}},
		{name: "partition drift", sql: untracked(
			`UPDATE membership SET user_id = '`+otherUser+`' WHERE id = '`+memb+`'`,
			`UPDATE morango_store SET serialized = json_set(serialized, '$.user_id', '`+otherUser+`') WHERE id = '`+memb+`'`),
			notices: []VerifyKind{VerifyPartitionDrift}, errors: []VerifyKind{VerifyForeignKey}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "copy.sqlite3")
			if err := os.WriteFile(path, cleanBytes, 0o644); err != nil {
				t.Fatal(err)
			}
			if len(c.sql) > 0 {
				db, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				db.SetMaxOpenConns(1)
				for _, q := range c.sql {
					if _, err := db.Exec(q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if c.corrupt != nil {
				c.corrupt(path)
			}
			// The file is old, so that a write would change its mtime.
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
			before := stateOfFile(t, path)
			ps, res := verifyAll(t, path)
			t.Logf("%+v\n%s", res, describe(ps))
			if got := kinds(ps, SeverityError); !slices.Equal(got, c.errors) {
				t.Errorf("errors %v, want %v:\n%s", got, c.errors, describe(ps))
			}
			if got := kinds(ps, SeverityNotice); !slices.Equal(got, c.notices) {
				t.Errorf("notices %v, want %v:\n%s", got, c.notices, describe(ps))
			}
			if res.OK() != (len(c.errors) == 0) || res.Errors == 0 && len(c.errors) > 0 {
				t.Errorf("result %+v", res)
			}
			if c.id != "" && (len(ps) == 0 || ps[0].ID != c.id) {
				t.Errorf("the first problem does not name %s:\n%s", c.id, describe(ps))
			}
			if c.fix != "" && (len(ps) == 0 || !strings.Contains(ps[0].Fix, c.fix)) {
				t.Errorf("the first problem's fix does not say %q:\n%s", c.fix, describe(ps))
			}
			for _, p := range ps {
				if p.Problem == "" || p.Fix == "" {
					t.Errorf("problem without a description or a fix: %+v", p)
				}
			}
			if stateOfFile(t, path) != before {
				t.Errorf("verify changed the file")
			}
		})
	}
}

func describe(ps []VerifyProblem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + string(p.Severity) + " " + string(p.Kind) + " " + p.Model + " " + p.ID + ": " + p.Problem + " | " + p.Fix + "\n")
	}
	return b.String()
}

func TestVerifyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sqlite3")
	_, err := Verify(context.Background(), path, func(VerifyProblem) error { return nil })
	var h *HintError
	if !errors.As(err, &h) {
		t.Fatalf("want an error with a hint, got %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("verify created the file")
	}
}

func TestGlobSQL(t *testing.T) {
	for _, c := range []struct{ tmpl, want string }{
		{"${dataset_id}:user-rw:${user_id}", `('*:user-rw:*')`},
		{"${id}:allusers-ro", `(s.id || ':allusers-ro')`},
		{"${dataset_id}:user-ro:${id}", `('*:user-ro:' || s.id)`},
		{"a*b?c[d]$$", `('a[*]b[?]c[[]d]$')`},
		{"", `''`},
	} {
		if got := globSQL(c.tmpl, "s.id"); got != c.want {
			t.Errorf("globSQL(%q) = %s, want %s", c.tmpl, got, c.want)
		}
	}
}

// A large store verifies in time proportional to its size. Set
// MORANGO_SLOW_TESTS=1 to run it with 100,000 rows.
func TestVerifyLargeStore(t *testing.T) {
	n := 5000
	if os.Getenv("MORANGO_SLOW_TESTS") != "" {
		n = 100000
	}
	ctx := context.Background()
	d := newSchoolDevice(t, t.TempDir(), "large")
	if _, err := school.Generate(ctx, d.app, verifyDataset, school.Options{Seed: 1, Records: n}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.serialize(ctx)
	serialize := time.Since(start)
	d.close()
	start = time.Now()
	ps, res := verifyAll(t, d.path)
	t.Logf("%d records: serialize %v, verify %v", res.Records, serialize, time.Since(start))
	if len(ps) != 0 || res.Records < int64(n) {
		t.Fatalf("%+v\n%s", res, describe(ps))
	}
}

// A record of an older app lacks some columns: deserializing gives a new
// row their defaults (nickname 'none', score 0 in a REAL column), and
// verify takes that for the record's data. A row that holds another value
// in such a column is still reported.
func TestVerifyRecordOfAnOlderApp(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "d")
	d.init(ctx)
	d.exec(`ALTER TABLE person ADD COLUMN score REAL NOT NULL DEFAULT 0`)
	d.db.Close()
	var err error
	if d.db, err = Open(ctx, d.path, &Options{SystemID: "sys-d.sqlite3", NodeID: "node"}); err != nil {
		t.Fatal(err)
	}
	d.putRecord(dsID, "dataset", dsID, `{"id":"`+dsID+`","name":"School"}`, false)
	d.putRecord(aliceID, "person", dsID+":user-ro:"+aliceID, `{"id":"`+aliceID+`","dataset_id":"`+dsID+`","name":"Alice"}`, false)
	d.putRecord(bobID, "person", dsID+":user-ro:"+bobID, `{"id":"`+bobID+`","dataset_id":"`+dsID+`","name":"Bob"}`, false)
	if res, err := d.db.Deserialize(ctx); err != nil || res.Written != 3 {
		t.Fatalf("deserialize: %+v %v", res, err)
	}
	if ps, _ := verifyAll(t, d.path); slices.ContainsFunc(ps, func(p VerifyProblem) bool { return p.Kind == VerifyDataMismatch }) {
		t.Errorf("defaults taken for a mismatch: %s", describe(ps))
	}
	// Bob's nickname changes without change tracking.
	d.exec(`INSERT INTO morango_applying (active) VALUES (1)`)
	d.exec(`UPDATE person SET nickname = 'bobby' WHERE id = ?`, bobID)
	d.exec(`DELETE FROM morango_applying`)
	ps, _ := verifyAll(t, d.path)
	var found []string
	for _, p := range ps {
		if p.Kind == VerifyDataMismatch {
			found = append(found, p.ID+": "+p.Problem)
		}
	}
	if len(found) != 1 || !strings.HasPrefix(found[0], bobID) || !strings.Contains(found[0], "nickname") {
		t.Errorf("mismatches %q, want Bob's nickname", found)
	}
}
