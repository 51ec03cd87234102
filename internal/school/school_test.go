package school

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/morango-sync/morango/profile"
)

// The copies in testdata/school are what tests of other packages read.
func TestTestdataCopiesMatch(t *testing.T) {
	for name, embedded := range map[string][]byte{"schema.sql": []byte(Schema()), "profile.json": ProfileJSON()} {
		onDisk, err := os.ReadFile(filepath.Join("..", "..", "testdata", "school", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, embedded) {
			t.Errorf("testdata/school/%s differs from internal/school/%s: copy it over", name, name)
		}
	}
}

func newDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "school.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(Schema()); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestProfileMatchesSchema(t *testing.T) {
	p, err := profile.Parse(ProfileJSON())
	if err != nil {
		t.Fatal(err)
	}
	db := newDB(t)
	tables := map[string][]string{}
	rows, err := db.Query(`SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var tbl, col string
		if err := rows.Scan(&tbl, &col); err != nil {
			t.Fatal(err)
		}
		tables[tbl] = append(tables[tbl], col)
	}
	if err := p.CheckSchema(tables); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateConsistentAndDeterministic(t *testing.T) {
	ctx := context.Background()
	const ds = "1e2edbeb2ffea72cd7eb943a956a992c"
	dump := func(db *sql.DB) string {
		var b bytes.Buffer
		for _, q := range []string{
			`SELECT group_concat(id || progress, ',') FROM (SELECT * FROM contentsummarylog ORDER BY id)`,
			`SELECT group_concat(id || start_time, ',') FROM (SELECT * FROM contentsessionlog ORDER BY id)`,
		} {
			var s sql.NullString
			if err := db.QueryRow(q).Scan(&s); err != nil {
				t.Fatal(err)
			}
			b.WriteString(s.String)
		}
		return b.String()
	}
	a, b := newDB(t), newDB(t)
	sa, err := Generate(ctx, a, ds, Options{Seed: 7, Records: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(ctx, b, ds, Options{Seed: 7, Records: 2000}); err != nil {
		t.Fatal(err)
	}
	if dump(a) != dump(b) {
		t.Error("same seed, different data")
	}
	var total int
	for _, tbl := range []string{"facilitydataset", "facility", "facilityuser", "classroom", "membership", "lesson",
		"lessonassignment", "contentsummarylog", "contentsessionlog", "anonymoussessionlog", "coachnote"} {
		var n int
		if err := a.QueryRow(`SELECT count(*) FROM ` + tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != sa.Rows || total < 2000 || len(sa.LearnerIDs) < 2 {
		t.Errorf("rows %d, summary %+v", total, sa.Rows)
	}
	// Every foreign key points at a row.
	for _, q := range []string{
		`SELECT count(*) FROM contentsummarylog l LEFT JOIN facilityuser u ON u.id = l.user_id WHERE u.id IS NULL`,
		`SELECT count(*) FROM contentsessionlog l LEFT JOIN facilityuser u ON u.id = l.user_id WHERE u.id IS NULL`,
		`SELECT count(*) FROM membership m LEFT JOIN classroom c ON c.id = m.classroom_id WHERE c.id IS NULL`,
		`SELECT count(*) FROM lesson l LEFT JOIN classroom c ON c.id = l.classroom_id WHERE c.id IS NULL`,
	} {
		var n int
		if err := a.QueryRow(q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d dangling (%v)", q, n, err)
		}
	}
}
