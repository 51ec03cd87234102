package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestRunSmall runs the whole benchmark on a small school: every stage
// runs, B converges with A, and the report holds what the table and the
// JSON show.
func TestRunSmall(t *testing.T) {
	r, err := Run(context.Background(), Options{Records: 300, Runs: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Runs != 2 || r.Records < 300 {
		t.Errorf("runs %d, records %d", r.Runs, r.Records)
	}
	for _, name := range []string{StageGenerate, StageFloor, StageSerialize, StageExport, StageImport, StageManifest,
		StageExportNothing, StageChange, StageExport1, StageImport1} {
		st := r.Stage(name)
		if st == nil {
			t.Fatalf("no stage %s", name)
		}
		if st.Seconds <= 0 || len(st.Runs) != 2 {
			t.Errorf("%s: %v seconds, runs %v", name, st.Seconds, st.Runs)
		}
		if runtime.GOOS == "linux" && (st.PrivatePeakBytes == 0 || st.PrivatePeakBytes > st.RSSPeakBytes) {
			t.Errorf("%s: private memory %d, resident %d", name, st.PrivatePeakBytes, st.RSSPeakBytes)
		}
	}
	if n := r.Stage(StageExport).Records; n != r.Records {
		t.Errorf("export sent %d records of %d", n, r.Records)
	}
	if n := r.Stage(StageExportNothing).Records; n != 0 {
		t.Errorf("export for a peer that has everything sent %d records", n)
	}
	if r.Stage(StageImport1).Records != r.Stage(StageExport1).Records || r.Changed == 0 {
		t.Errorf("1%% change: %d changed, %d exported, %d imported", r.Changed, r.Stage(StageExport1).Records, r.Stage(StageImport1).Records)
	}
	if r.Bundle.Records != r.Records || r.Bundle.Ratio <= 0 {
		t.Errorf("bundle: %+v", r.Bundle)
	}
	if len(r.Targets) != 7 {
		t.Errorf("%d targets", len(r.Targets))
	}

	var table, js bytes.Buffer
	if err := WriteTable(&table, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"floor", "import", "× floor", "CPU s", "bundle / zstd JSON", "targets"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Stage(StageImport).CPUSeconds <= 0 {
		t.Errorf("no CPU time in the JSON report")
	}
}

func TestRunRefusesTinySchools(t *testing.T) {
	if _, err := Run(context.Background(), Options{Records: 5}); err == nil {
		t.Fatal("a school of 5 records ran")
	}
}

// With Statements, each sync stage lists the store's statements and steps
// that took it longest, and the table shows them.
func TestRunStatements(t *testing.T) {
	r, err := Run(context.Background(), Options{Records: 300, Seed: 1, Statements: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{StageSerialize, StageImport} {
		st := r.Stage(name)
		if len(st.Statements) == 0 || len(st.Statements) > topStatements {
			t.Fatalf("%s: %d statements", name, len(st.Statements))
		}
		for i, s := range st.Statements {
			if s.Runs <= 0 || s.Seconds <= 0 || s.Statement == "" || i > 0 && s.Seconds > st.Statements[i-1].Seconds {
				t.Errorf("%s: statement %d: %+v", name, i, s)
			}
		}
	}
	var commit bool
	for _, s := range r.Stage(StageImport).Statements {
		commit = commit || s.Statement == "commit"
	}
	if !commit {
		t.Errorf("import's statements lack its commit: %+v", r.Stage(StageImport).Statements)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "import: the store's longest statements") {
		t.Errorf("table lacks the statements:\n%s", table.String())
	}
}

// PageSize creates every database of the sample app (A, B and the floor's)
// with pages of that size, and the report says which size it measured.
func TestRunPageSize(t *testing.T) {
	dir := t.TempDir()
	r, err := Run(context.Background(), Options{Records: 300, Seed: 1, PageSize: 16384, Dir: dir, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Env.PageSize != 16384 {
		t.Errorf("report: pages of %d bytes", r.Env.PageSize)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.sqlite3"))
	if err != nil || len(files) != 3 {
		t.Fatalf("databases %v, %v", files, err)
	}
	for _, f := range files {
		db, err := sql.Open("sqlite", f)
		if err != nil {
			t.Fatal(err)
		}
		var size int
		err = db.QueryRow(`PRAGMA page_size`).Scan(&size)
		db.Close()
		if err != nil || size != 16384 {
			t.Errorf("%s: pages of %d bytes (%v)", filepath.Base(f), size, err)
		}
	}
	var table bytes.Buffer
	if err := WriteTable(&table, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "pages of 16384 bytes") {
		t.Errorf("the table does not give the page size:\n%s", table.String())
	}
	for _, bad := range []int{1000, 256, 131072} {
		if _, err := Run(context.Background(), Options{Records: 300, PageSize: bad}); err == nil || !strings.Contains(err.Error(), "power of two") {
			t.Errorf("page size %d: %v", bad, err)
		}
	}
}
