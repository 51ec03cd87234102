package school

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/profile"
)

// ds is the dataset id of the tests: the original's root certificate id.
const ds = "1e2edbeb2ffea72cd7eb943a956a992c"

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

func newDB(t testing.TB) *sql.DB {
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

func parsed(t testing.TB) *profile.Profile {
	t.Helper()
	p, err := profile.Parse(ProfileJSON())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// columns returns a table's column names, from PRAGMA table_info.
func columns(t testing.TB, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	return cols
}

// The profile fits the schema, and its foreign keys are the schema's.
func TestProfileMatchesSchema(t *testing.T) {
	p, db := parsed(t), newDB(t)
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	tables := map[string][]string{}
	for _, n := range names {
		tables[n] = columns(t, db, n)
	}
	if err := p.CheckSchema(tables); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		m := p.ModelForTable(n)
		if m == nil {
			t.Errorf("table %s has no model", n)
			continue
		}
		schemaFKs := map[string]string{}
		rows, err := db.Query(`SELECT "from", "table" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var col, target string
			if err := rows.Scan(&col, &target); err != nil {
				t.Fatal(err)
			}
			schemaFKs[col] = p.ModelForTable(target).Name
		}
		rows.Close()
		if fmt.Sprint(schemaFKs) != fmt.Sprint(m.ForeignKeys) {
			t.Errorf("%s: the schema's foreign keys %v, the profile's %v", n, schemaFKs, m.ForeignKeys)
		}
	}
}

// The sample uses the five partition kinds of Kolibri's profile.
func TestPartitionKinds(t *testing.T) {
	p := parsed(t)
	var got []string
	for _, m := range p.Models {
		if !slices.Contains(got, m.Partition) {
			got = append(got, m.Partition)
		}
	}
	for _, want := range []string{"${dataset_id}:anonymous", "${dataset_id}:allusers-ro", "${dataset_id}:user-ro:${user_id}",
		"${dataset_id}:user-ro:${id}", "${dataset_id}:user-rw:${user_id}", "${dataset_id}"} {
		if !slices.Contains(got, want) {
			t.Errorf("no model with partition %s", want)
		}
	}
	if m := p.Model("contentsummarylog"); m.SourceID != "${user_id}:${content_id}" {
		t.Errorf("contentsummarylog source id %q", m.SourceID)
	}
}

// A row of a model, read from the app's table.
type appRow struct {
	model  *profile.Model
	id     string
	values map[string]sql.NullString
}

func (r appRow) get(c string) (string, bool) {
	v, ok := r.values[c]
	return v.String, ok && v.Valid
}

// readAll reads every row of every model, in a fixed order.
func readAll(t testing.TB, db *sql.DB, p *profile.Profile) []appRow {
	t.Helper()
	var out []appRow
	for _, m := range p.Models {
		cols := columns(t, db, m.Table)
		rows, err := db.Query(fmt.Sprintf(`SELECT %s FROM %s ORDER BY id`, strings.Join(cols, ", "), m.Table))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			r := appRow{model: m, values: map[string]sql.NullString{}}
			for i, c := range cols {
				r.values[c] = vals[i]
			}
			r.id = r.values["id"].String
			out = append(out, r)
		}
		rows.Close()
	}
	return out
}

func dump(rows []appRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s %v\n", r.model.Name, r.values)
	}
	return b.String()
}

// checkConsistent checks that every row has an identity (its partition
// renders; computed ids are right) and that every foreign key points at a
// row of the model it names. It returns the identities by id.
func checkConsistent(t *testing.T, rows []appRow) map[string]profile.Identity {
	t.Helper()
	idn := map[string]profile.Identity{}
	model := map[string]string{}
	for _, r := range rows {
		got, err := r.model.Identify(r.id, r.get)
		if err != nil {
			t.Errorf("%s %s: %v", r.model.Name, r.id, err)
			continue
		}
		if _, dup := idn[r.id]; dup {
			t.Errorf("id %s used twice", r.id)
		}
		idn[r.id], model[r.id] = got, r.model.Name
	}
	for _, r := range rows {
		for col, target := range r.model.ForeignKeys {
			v, ok := r.get(col)
			if !ok {
				continue
			}
			if model[v] != target {
				t.Errorf("%s %s: %s = %s is not a %s row", r.model.Name, r.id, col, v, target)
			}
		}
	}
	return idn
}

func TestGenerate(t *testing.T) {
	ctx := context.Background()
	p := parsed(t)
	a, b, c := newDB(t), newDB(t), newDB(t)
	sum, err := Generate(ctx, a, ds, Options{Seed: 7, Records: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(ctx, b, ds, Options{Seed: 7, Records: 3000}); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(ctx, c, ds, Options{Seed: 8, Records: 3000}); err != nil {
		t.Fatal(err)
	}
	rows := readAll(t, a, p)
	if dump(rows) != dump(readAll(t, b, p)) {
		t.Error("the same seed gave different data")
	}
	if dump(rows) == dump(readAll(t, c, p)) {
		t.Error("another seed gave the same data")
	}
	idn := checkConsistent(t, rows)

	if len(rows) != sum.Rows || sum.Rows < 3000 || sum.Rows > 3002 {
		t.Errorf("%d rows in the tables, Summary.Rows %d, want about 3000", len(rows), sum.Rows)
	}
	count := map[string]int{}
	for _, r := range rows {
		count[r.model.Name]++
	}
	for name, want := range map[string]int{"facilitydataset": 1, "facility": 1, "facilityuser": 15, "classroom": 1,
		"lesson": 2, "lessonassignment": 2, "membership": 14} {
		if count[name] != want {
			t.Errorf("%d %s rows, want %d", count[name], name, want)
		}
	}
	for _, name := range []string{"contentsummarylog", "contentsessionlog", "anonymoussessionlog", "coachnote"} {
		if count[name] < 20 {
			t.Errorf("only %d %s rows", count[name], name)
		}
	}
	if count["contentsessionlog"] < count["contentsummarylog"] {
		t.Errorf("%d session logs, %d summary logs: every summary log has a session", count["contentsessionlog"], count["contentsummarylog"])
	}

	// The summary names what the scenarios need.
	if sum.DatasetID != ds || idn[sum.DatasetID].Partition != ds+":allusers-ro" {
		t.Errorf("dataset %s: %+v", sum.DatasetID, idn[sum.DatasetID])
	}
	if idn[sum.FacilityID].Partition != ds+":allusers-ro" || idn[sum.AdminID].Partition != ds+":user-ro:"+sum.AdminID {
		t.Errorf("facility or admin missing: %+v %+v", idn[sum.FacilityID], idn[sum.AdminID])
	}
	var role string
	if err := a.QueryRow(`SELECT role FROM facilityuser WHERE id = ?`, sum.AdminID).Scan(&role); err != nil || role != "admin" {
		t.Errorf("admin's role %q, %v", role, err)
	}
	if len(sum.LearnerIDs) != 14 || len(sum.Classrooms) != 1 || len(sum.Lessons) != 2 {
		t.Errorf("summary %+v", sum)
	}
	for _, id := range slices.Concat(sum.LearnerIDs, sum.Classrooms, sum.Lessons) {
		if _, ok := idn[id]; !ok {
			t.Errorf("summary names %s, which is not in the database", id)
		}
	}
}

// The rows a learner's tablet may read (scope single-user) reference only
// rows it may read too, and the admin-only rows stay out of its reach.
func TestSingleUserScopeIsClosed(t *testing.T) {
	ctx := context.Background()
	p, db := parsed(t), newDB(t)
	sum, err := Generate(ctx, db, ds, Options{Seed: 3, Records: 2000})
	if err != nil {
		t.Fatal(err)
	}
	rows := readAll(t, db, p)
	idn := checkConsistent(t, rows)
	def, ok := p.ScopeDefinition("single-user")
	if !ok {
		t.Fatal("no single-user scope definition")
	}
	learner := sum.LearnerIDs[1]
	var prefixes []string
	for _, tmpl := range []string{def.ReadWriteFilterTemplate, def.ReadFilterTemplate} {
		tmpl = strings.NewReplacer("${dataset_id}", ds, "${user_id}", learner).Replace(tmpl)
		prefixes = append(prefixes, strings.Fields(tmpl)...)
	}
	readable := func(partition string) bool {
		return slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(partition, pre) })
	}
	seen := map[string]int{}
	for _, r := range rows {
		if !readable(idn[r.id].Partition) {
			continue
		}
		seen[r.model.Name]++
		for col := range r.model.ForeignKeys {
			if v, ok := r.get(col); ok && !readable(idn[v].Partition) {
				t.Errorf("the learner reads %s %s but not its %s %s (partition %s)", r.model.Name, r.id, col, v, idn[v].Partition)
			}
		}
	}
	for _, name := range []string{"facilitydataset", "facility", "facilityuser", "classroom", "membership", "lesson",
		"lessonassignment", "contentsummarylog", "contentsessionlog"} {
		if seen[name] == 0 {
			t.Errorf("the learner reads no %s", name)
		}
	}
	for _, name := range []string{"anonymoussessionlog", "coachnote"} {
		if seen[name] != 0 {
			t.Errorf("the learner reads %d %s rows", seen[name], name)
		}
	}
	if seen["facilityuser"] != 1 || seen["membership"] != 1 {
		t.Errorf("the learner reads %d users and %d memberships, want only their own", seen["facilityuser"], seen["membership"])
	}
}

func TestSummaryLogID(t *testing.T) {
	// The original's vector (uuids.json, syncable_model_calculate_uuid).
	got := SummaryLogID(ds, "62af002a58548dbc3613504793660dac", "cccccccccccccccccccccccccccccccc")
	if got != "156a5141357c305dabc7a61e167464f0" {
		t.Errorf("SummaryLogID = %s", got)
	}
}

func TestLearnerWeek(t *testing.T) {
	ctx := context.Background()
	p := parsed(t)
	week := time.Date(2026, 11, 9, 16, 0, 0, 0, time.UTC)
	run := func() (*sql.DB, Summary) {
		db := newDB(t)
		sum, err := Generate(ctx, db, ds, Options{Seed: 1, Records: 500})
		if err != nil {
			t.Fatal(err)
		}
		if err := LearnerWeek(ctx, db, ds, sum.LearnerIDs[0], 25, 2, week); err != nil {
			t.Fatal(err)
		}
		return db, sum
	}
	a, sum := run()
	b, _ := run()
	rows := readAll(t, a, p)
	if dump(rows) != dump(readAll(t, b, p)) {
		t.Error("the same seed gave a different week")
	}
	checkConsistent(t, rows)
	var sessions, summaries int
	err := a.QueryRow(`SELECT count(*) FROM contentsessionlog WHERE user_id = ? AND end_time > ?`, sum.LearnerIDs[0], timestamp(defaultNow.Add(time.Hour))).Scan(&sessions)
	if err != nil || sessions != 25 {
		t.Errorf("%d new session logs (%v), want 25", sessions, err)
	}
	err = a.QueryRow(`SELECT count(*) FROM contentsummarylog WHERE user_id = ? AND modified > ?`, sum.LearnerIDs[0], timestamp(defaultNow.Add(time.Hour))).Scan(&summaries)
	if err != nil || summaries == 0 || summaries > 25 {
		t.Errorf("%d summary logs touched (%v)", summaries, err)
	}
}

func TestAssignLessonAndEditRow(t *testing.T) {
	ctx := context.Background()
	p, db := parsed(t), newDB(t)
	sum, err := Generate(ctx, db, ds, Options{Seed: 1, Records: 200})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 9, 12, 0, 0, 0, time.UTC)
	lesson, err := AssignLesson(ctx, db, ds, sum.Classrooms[0], "Fractions, week 2", now)
	if err != nil || !ids.Valid(lesson) {
		t.Fatalf("AssignLesson = %q, %v", lesson, err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM lessonassignment WHERE lesson_id = ? AND classroom_id = ?`, lesson, sum.Classrooms[0]).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d assignments of the new lesson (%v)", n, err)
	}

	if err := EditRow(ctx, db, "lesson", lesson, map[string]any{"title": "Fractions, week 3", "is_active": 0}, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var title, modified string
	var active int
	if err := db.QueryRow(`SELECT title, is_active, modified FROM lesson WHERE id = ?`, lesson).Scan(&title, &active, &modified); err != nil {
		t.Fatal(err)
	}
	if title != "Fractions, week 3" || active != 0 || modified != "2026-11-09T13:00:00.000Z" {
		t.Errorf("after the edit: %q %d %s", title, active, modified)
	}
	if err := EditRow(ctx, db, "membership", ids.Random(), map[string]any{"classroom_id": sum.Classrooms[0]}, now); !errors.Is(err, ErrNoRow) {
		t.Errorf("editing a missing row: %v", err)
	}
	if err := EditRow(ctx, db, "lesson", lesson, map[string]any{"nope": 1}, now); err == nil {
		t.Error("edited a column that does not exist")
	}
	if err := EditRow(ctx, db, "nope", lesson, nil, now); err == nil {
		t.Error("edited a table that does not exist")
	}
	checkConsistent(t, readAll(t, db, p))
}

func TestGenerateRefusesBadDataset(t *testing.T) {
	if _, err := Generate(context.Background(), newDB(t), "dataset", Options{}); err == nil {
		t.Error("accepted a dataset id that is not an id")
	}
}

// BenchmarkGenerate writes a school of 100,000 rows per iteration.
func BenchmarkGenerate(b *testing.B) {
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		db := newDB(b)
		b.StartTimer()
		if _, err := Generate(ctx, db, ds, Options{Seed: uint64(i), Records: 100_000}); err != nil {
			b.Fatal(err)
		}
	}
}
