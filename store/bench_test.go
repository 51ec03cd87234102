package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/morango-sync/morango/internal/school"
	"github.com/morango-sync/morango/profile"
)

// The hot paths of a transfer, on the sample school app (see also
// 'morango bench', which measures whole transfers against the floor of
// plain SQL inserts, and docs/performance.md):
//
//	go test ./store -run '^$' -bench . -benchtime 3x
//
// BenchmarkQueue reads what an export sends: every record (a peer without
// a manifest), the records a peer lacks after 1% changed, and nothing (a
// peer that has everything). BenchmarkImport merges records into an empty
// store and into one that holds them all, and deserializes them.

const benchDataset = "5ab1e5c0ffee4a11b00c5ca1ab1e0001"

// benchSizes are the store sizes the benchmarks run at.
var benchSizes = []int{20000}

// schoolDB makes a database of the school app in dir with the sync tables.
func schoolDB(tb testing.TB, dir, name string) (*DB, *sql.DB) {
	tb.Helper()
	ctx := context.Background()
	path := filepath.Join(dir, name+".sqlite3")
	app, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { app.Close() })
	if _, err := app.Exec(school.Schema()); err != nil {
		tb.Fatal(err)
	}
	p, err := profile.Parse(school.ProfileJSON())
	if err != nil {
		tb.Fatal(err)
	}
	db, err := Init(ctx, path, p, &Options{SystemID: "bench-" + name, NodeID: "node-" + name})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db, app
}

// generated is a serialized school of n records, and its records.
type generated struct {
	db      *DB
	app     *sql.DB
	records []*Record
}

// generate makes a school of n records on a new device and serializes it.
func generate(tb testing.TB, dir string, n int) *generated {
	tb.Helper()
	ctx := context.Background()
	db, app := schoolDB(tb, dir, "source")
	if _, err := school.Generate(ctx, app, benchDataset, school.Options{Seed: 1, Records: n}); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Serialize(ctx); err != nil {
		tb.Fatal(err)
	}
	g := &generated{db: db, app: app}
	g.records = readQueue(tb, db, nil)
	return g
}

// readQueue returns the records a queue over the whole store holds,
// narrowed by sels unless sels is nil.
func readQueue(tb testing.TB, db *DB, sels []Selector) []*Record {
	tb.Helper()
	ctx := context.Background()
	q, err := db.OpenQueue(ctx, []string{""})
	if err != nil {
		tb.Fatal(err)
	}
	defer q.Close()
	if sels != nil {
		if err := q.Select(ctx, sels); err != nil {
			tb.Fatal(err)
		}
	}
	_, total, err := q.Counts(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	recs := make([]*Record, 0, total)
	err = q.Each(ctx, func(r *Record) error {
		cp := *r
		cp.History = slices.Clone(r.History)
		recs = append(recs, &cp)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if int64(len(recs)) != total {
		tb.Fatalf("Counts says %d records, Each gives %d", total, len(recs))
	}
	return recs
}

// importAll merges recs into db in batches, as an import does, and
// deserializes them.
func importAll(tb testing.TB, db *DB, recs []*Record) *ImportResult {
	tb.Helper()
	ctx := context.Background()
	im, err := db.BeginImport(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	defer im.Abort()
	if err := im.Expect(ctx, int64(len(recs))); err != nil {
		tb.Fatal(err)
	}
	for start := 0; start < len(recs); start += 500 {
		if err := im.Add(ctx, recs[start:min(start+500, len(recs))]); err != nil {
			tb.Fatal(err)
		}
	}
	res, err := im.Finish(ctx, Applied{})
	if err != nil {
		tb.Fatal(err)
	}
	if res.Refused > 0 || res.Deserialize.Pending > 0 {
		tb.Fatalf("%d refused (%v), %d pending", res.Refused, res.Refusals, res.Deserialize.Pending)
	}
	return res
}

func BenchmarkQueue(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes {
		g := generate(b, b.TempDir(), n)
		me, err := g.db.Instance(ctx)
		if err != nil {
			b.Fatal(err)
		}
		counters, err := g.db.MaxCounters(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var held int64
		for _, c := range counters {
			if c.Instance == me.ID {
				held = c.Counter
			}
		}
		// 1% of the records change; a peer holding the rest lacks them.
		if _, err := g.app.Exec(`UPDATE contentsessionlog SET progress = min(1.0, progress + 0.01) WHERE rowid % 100 = 0`); err != nil {
			b.Fatal(err)
		}
		if _, err := g.db.Serialize(ctx); err != nil {
			b.Fatal(err)
		}
		lack := []Selector{{Partition: "", Instance: me.ID, After: held}}
		for _, c := range []struct {
			name string
			sels []Selector
		}{{"all", nil}, {"lacks-1pct", lack}, {"has-everything", []Selector{}}} {
			b.Run(fmt.Sprintf("%s/%d", c.name, n), func(b *testing.B) {
				var records int
				for b.Loop() {
					records = len(readQueue(b, g.db, c.sels))
				}
				b.ReportMetric(float64(records), "records")
				if records > 0 {
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
				}
			})
		}
	}
}

func BenchmarkImport(b *testing.B) {
	for _, n := range benchSizes {
		dir := b.TempDir()
		g := generate(b, dir, n)
		template := filepath.Join(dir, "empty.sqlite3")
		{
			db, app := schoolDB(b, dir, "empty")
			db.Close()
			app.Close()
		}
		fresh := func(b *testing.B, i int) *DB {
			b.Helper()
			path := filepath.Join(b.TempDir(), fmt.Sprintf("dst%d.sqlite3", i))
			copyFile(b, template, path)
			db, err := Open(context.Background(), path, &Options{SystemID: "bench-dst", NodeID: "node-dst"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		}
		// new: the first import of a device (bulk: the partition index is
		// rebuilt; app rows written as records are merged); new-indexed:
		// the same with the index kept; new-at-end: app rows written by
		// deserializing at the end.
		for _, c := range []struct {
			name   string
			bulk   int64
			direct bool
		}{{"new", minBulk, true}, {"new-indexed", 1 << 62, true}, {"new-at-end", minBulk, false}} {
			b.Run(fmt.Sprintf("%s/%d", c.name, n), func(b *testing.B) {
				saved := minBulk
				minBulk, writeDirectly = c.bulk, c.direct
				defer func() { minBulk, writeDirectly = saved, true }()
				i := 0
				for b.Loop() {
					b.StopTimer()
					db := fresh(b, i)
					i++
					b.StartTimer()
					importAll(b, db, g.records)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(g.records)), "ns/record")
			})
		}
		b.Run(fmt.Sprintf("already-have/%d", n), func(b *testing.B) {
			db := fresh(b, -1)
			importAll(b, db, g.records)
			for b.Loop() {
				res := importAll(b, db, g.records)
				if res.AlreadyHave != int64(len(g.records)) {
					b.Fatalf("%d already had, want %d", res.AlreadyHave, len(g.records))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(g.records)), "ns/record")
		})
	}
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// TestBulkImport checks that an import large enough to be bulk (its
// partition index dropped and rebuilt) leaves the same database as one
// that is not, and the index as it was.
func TestBulkImport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	g := generate(t, dir, 400)
	indexSQL := func(db *DB) []string {
		rows, err := db.SQL().QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'morango_store' ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var l []string
		for rows.Next() {
			var name string
			var def sql.NullString
			if err := rows.Scan(&name, &def); err != nil {
				t.Fatal(err)
			}
			l = append(l, name+": "+def.String)
		}
		return l
	}
	dump := func(db *DB) []string {
		var l []string
		for _, r := range readQueue(t, db, nil) {
			l = append(l, fmt.Sprintf("%+v", *r))
		}
		slices.Sort(l)
		var app []string
		for _, tb := range []string{"facilityuser", "contentsummarylog", "contentsessionlog", "coachnote"} {
			rows, err := db.SQL().QueryContext(ctx, `SELECT * FROM "`+tb+`" ORDER BY id`)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				app = append(app, fmt.Sprintf("%s: %v", tb, vals))
			}
			rows.Close()
		}
		return append(l, app...)
	}

	plain, _ := schoolDB(t, dir, "plain")
	importAll(t, plain, g.records)

	saved := minBulk
	minBulk = 1
	defer func() { minBulk = saved }()
	bulk, _ := schoolDB(t, dir, "bulk")
	before := indexSQL(bulk)
	probe, err := bulk.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.Expect(ctx, int64(len(g.records))); err != nil {
		t.Fatal(err)
	}
	if len(probe.rebuild) == 0 {
		t.Fatal("an import into an empty store is not bulk")
	}
	probe.Abort()
	if got := indexSQL(bulk); !slices.Equal(got, before) {
		t.Fatalf("an aborted bulk import changed the indexes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
	}
	importAll(t, bulk, g.records)
	if got := indexSQL(bulk); !slices.Equal(got, before) {
		t.Fatalf("indexes after a bulk import:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
	}
	if p, b := dump(plain), dump(bulk); !slices.Equal(p, b) {
		t.Fatalf("a bulk import differs from a plain one")
	}
	// A second, small import is not bulk.
	im, err := bulk.BeginImport(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	if err := im.Expect(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if len(im.rebuild) != 0 {
		t.Fatal("an import of 10 records into a store of hundreds is bulk")
	}
}

// TestExportNothingReadsNoRecord checks the query plans of an export: a
// peer that lacks nothing costs no query of the store, and the queue of
// what a peer lacks is read through the queue's ids, never by scanning
// the store.
func TestExportNothingReadsNoRecord(t *testing.T) {
	ctx := context.Background()
	g := generate(t, t.TempDir(), 300)
	q, err := g.db.OpenQueue(ctx, []string{benchDataset})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Select(ctx, []Selector{}); err != nil {
		t.Fatal(err)
	}
	counts, total, err := q.Counts(ctx)
	if err != nil || total != 0 || len(counts) != 0 {
		t.Fatalf("queue for a peer that has everything: %v %d %v", counts, total, err)
	}
	if err := q.Each(ctx, func(*Record) error { return fmt.Errorf("a record") }); err != nil {
		t.Fatal(err)
	}
	// Narrowed by a selector: the plan starts from the queue's ids.
	if err := q.Select(ctx, []Selector{{Partition: benchDataset, Instance: strings.Repeat("0", 32), After: 0}}); err != nil {
		t.Fatal(err)
	}
	from, args := q.query()
	for _, stmt := range []string{`SELECT s.model_name, count(*) FROM ` + from + ` GROUP BY s.model_name`, `SELECT ` + recordColumns("s") + ` FROM ` + from} {
		plan := explain(t, q.tx, stmt, args...)
		for _, line := range plan {
			if strings.HasPrefix(line, "SCAN s") || strings.HasPrefix(line, "SCAN morango_store") {
				t.Errorf("%s\nscans the store:\n%s", stmt, strings.Join(plan, "\n"))
			}
		}
	}
}

func explain(t *testing.T, q execer, stmt string, args ...any) []string {
	t.Helper()
	rows, err := q.QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+stmt, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stmt)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// TestDeserializeRowTheAppRefuses: when the app's constraints refuse a
// batch, rows are written one by one; the refused one waits, dirty, with
// the reason, and is written by a later deserialization once the app
// accepts it.
func TestDeserializeRowTheAppRefuses(t *testing.T) {
	ctx := context.Background()
	a, b := newDevice(t, "a"), newDevice(t, "b")
	a.init(ctx)
	b.init(ctx)
	b.exec(`CREATE UNIQUE INDEX person_name ON person (name)`)
	a.exec(`INSERT INTO dataset (id, name) VALUES (?, 'School')`, dsID)
	a.exec(`INSERT INTO person (id, dataset_id, name) VALUES (?, ?, 'Sam'), (?, ?, 'Sam')`, aliceID, dsID, bobID, dsID)
	a.serialize(ctx)
	copyAll(t, a, b, []string{dsID})

	if n := b.count(`SELECT count(*) FROM person`); n != 1 {
		t.Fatalf("B holds %d persons, want the one its constraint lets in", n)
	}
	var refused string
	if err := b.app.QueryRow(`SELECT id FROM morango_store WHERE model_name = 'person' AND dirty_bit
		AND deserialization_error LIKE 'the app refused the row: %'`).Scan(&refused); err != nil {
		t.Fatalf("no person waits with the app's refusal: %v", err)
	}
	if n := b.count(`SELECT count(*) FROM morango_store WHERE dirty_bit`); n != 1 {
		t.Errorf("%d records wait, want 1", n)
	}
	b.exec(`DROP INDEX person_name`)
	res, err := b.db.Deserialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 1 || res.Pending != 0 {
		t.Errorf("after the constraint went: %+v", res)
	}
	if n := b.count(`SELECT count(*) FROM person WHERE id = ?`, refused); n != 1 {
		t.Errorf("the refused person is still not in the app")
	}
	if n := b.count(`SELECT count(*) FROM morango_store WHERE dirty_bit OR deserialization_error <> ''`); n != 0 {
		t.Errorf("%d records still dirty or with an error", n)
	}
}
