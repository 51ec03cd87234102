package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the demo and then checks the devices' databases itself,
// not the demo's own table.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes seconds")
	}
	dir := t.TempDir()
	var out bytes.Buffer
	err := Run(context.Background(), []string{"morango", "demo", "--dir", dir, "--records", "400"}, &out, &out)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"$ morango exchange", "$ morango cert grant", "All full-facility devices hold identical data"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}

	open := func(dev string) *sql.DB {
		db, err := sql.Open("sqlite", filepath.Join(dir, dev, "school.sqlite3"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	dump := func(db *sql.DB, where string) []string {
		rows, err := db.Query(`SELECT s.id || '|' || s.serialized || '|' || s.deleted || s.hard_deleted || '|' || s.last_saved_instance || ':' ||
			s.last_saved_counter || '|' || s.conflicting_serialized_data || '|' ||
			coalesce((SELECT group_concat(instance_id || ':' || counter) FROM (SELECT * FROM morango_recordmaxcounter r
				WHERE r.store_model_id = s.id ORDER BY instance_id)), '')
			FROM morango_store s WHERE ` + where + ` ORDER BY s.id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var l []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			l = append(l, s)
		}
		return l
	}
	same := func(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

	facility := open("facility")
	ref := dump(facility, "true")
	if len(ref) < 400 {
		t.Fatalf("facility holds %d records", len(ref))
	}
	for _, dev := range []string{"city", "cloud", "city2"} {
		if got := dump(open(dev), "true"); !same(got, ref) {
			t.Errorf("%s holds %d records differing from facility's %d", dev, len(got), len(ref))
		}
	}

	// Home holds exactly the facility's records in its read scope.
	home := open("home")
	var params string
	if err := home.QueryRow(`SELECT scope_params FROM morango_certificate WHERE scope_definition_id = 'single-user' AND private_key IS NOT NULL`).Scan(&params); err != nil {
		t.Fatal(err)
	}
	var p struct{ DatasetID, UserID string }
	if err := json.Unmarshal([]byte(strings.NewReplacer("dataset_id", "DatasetID", "user_id", "UserID").Replace(params)), &p); err != nil {
		t.Fatal(err)
	}
	scope := fmt.Sprintf(`(s.partition LIKE '%[1]s:user-rw:%[2]s%%' OR s.partition LIKE '%[1]s:allusers-ro%%' OR s.partition LIKE '%[1]s:user-ro:%[2]s%%')`, p.DatasetID, p.UserID)
	if got, want := dump(home, "true"), dump(facility, scope); !same(got, want) || len(got) == 0 {
		t.Errorf("home holds %d records, facility has %d in home's scope", len(got), len(want))
	}
	var others int
	if err := home.QueryRow(`SELECT count(*) FROM contentsessionlog WHERE user_id <> ?`, p.UserID).Scan(&others); err != nil || others != 0 {
		t.Errorf("home's app holds %d other learners' logs (%v)", others, err)
	}

	// The conflict, the deletion and the hard deletion are the same
	// everywhere: compare the app tables of the full devices.
	appDump := func(db *sql.DB) string {
		var b strings.Builder
		for _, q := range []string{
			`SELECT group_concat(id || ':' || progress || ':' || completed || ':' || modified, ';') FROM (SELECT * FROM contentsummarylog ORDER BY id)`,
			`SELECT group_concat(id || ':' || progress, ';') FROM (SELECT * FROM contentsessionlog ORDER BY id)`,
			`SELECT group_concat(id || ':' || title, ';') FROM (SELECT * FROM lesson ORDER BY id)`,
		} {
			var s sql.NullString
			if err := db.QueryRow(q).Scan(&s); err != nil {
				t.Fatal(err)
			}
			b.WriteString(s.String + "\n")
		}
		return b.String()
	}
	if a, b := appDump(facility), appDump(open("city2")); a != b {
		t.Error("facility's and city2's app tables differ")
	}
	var conflicts, erased int
	if err := facility.QueryRow(`SELECT count(*) FROM morango_store WHERE conflicting_serialized_data <> ''`).Scan(&conflicts); err != nil || conflicts == 0 {
		t.Errorf("no conflict kept (%v)", err)
	}
	if err := facility.QueryRow(`SELECT count(*) FROM morango_store WHERE hard_deleted AND serialized = '{}'`).Scan(&erased); err != nil || erased == 0 {
		t.Errorf("no hard deletion (%v)", err)
	}
}
