package store

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
)

// The one check valueChecks returns holds back exactly the rows one of its
// column checks holds back: morango_unsyncable, which sifts the rows in one
// call per 99 columns, lets every such row through, also when the value
// lies past the first 99 columns or the size is spread over several.
func TestValueChecksSiftExactly(t *testing.T) {
	registerFunctions()
	db, err := sql.Open("sqlite", t.TempDir()+"/v.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cols := []string{"id"}
	for i := range 150 {
		cols = append(cols, fmt.Sprintf("c%d", i))
	}
	if _, err := db.Exec(`CREATE TABLE t (` + strings.Join(cols, ", ") + `)`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, col, value string
		blob             bool
		want             bool
	}{
		{"plain", "c3", "hello", false, false},
		{"unicode", "c120", "naïve ☃", false, false},
		{"nul", "c140", "a\x00b", false, false},
		{"blob early", "c2", "\x01\x02", true, true},
		{"blob late", "c149", "\x01\x02", true, true},
		{"invalid early", "c0", "caf\xe9", false, true},
		{"invalid late", "c148", "caf\xe9", false, true},
		{"invalid after nul", "c130", "a\x00\xff", false, true},
		{"blob id only", "id", "\x01", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := db.Exec(`DELETE FROM t`); err != nil {
				t.Fatal(err)
			}
			v := any(c.value)
			if c.blob {
				v = []byte(c.value)
			}
			if _, err := db.Exec(`INSERT INTO t (id, `+c.col+`) VALUES ('x', ?)`, v); err != nil {
				t.Fatal(err)
			}
			got, why := check(t, db, cols)
			if got != c.want || got && !strings.Contains(why, "column") {
				t.Fatalf("held back %v (%q), want %v", got, why, c.want)
			}
		})
	}
	// Data larger than a record may hold, spread over columns on both
	// sides of the 99th.
	if _, err := db.Exec(`DELETE FROM t`); err != nil {
		t.Fatal(err)
	}
	half := strings.Repeat(`"`, maxRecordData/4) // each spelt \" in JSON
	if _, err := db.Exec(`INSERT INTO t (id, c10, c120) VALUES ('x', ?, ?)`, half, half); err != nil {
		t.Fatal(err)
	}
	if got, why := check(t, db, cols); !got || !strings.Contains(why, "larger") {
		t.Fatalf("a row of %d bytes as JSON: held back %v (%q)", maxRecordData, got, why)
	}
	if _, err := db.Exec(`UPDATE t SET c120 = ''`); err != nil {
		t.Fatal(err)
	}
	if got, why := check(t, db, cols); got {
		t.Fatalf("a row of half the size: held back (%q)", why)
	}
}

// check returns whether valueChecks holds back the one row of t, and why.
func check(t *testing.T, db *sql.DB, cols []string) (bool, string) {
	t.Helper()
	ch := valueChecks(cols)
	if len(ch) != 1 {
		t.Fatalf("%d checks", len(ch))
	}
	var held bool
	var why sql.NullString
	err := db.QueryRow(`SELECT coalesce(`+ch[0].cond+`, false), CASE WHEN `+ch[0].cond+` THEN `+ch[0].msg+` END FROM t`).Scan(&held, &why)
	if err != nil {
		t.Fatal(err)
	}
	return held, why.String
}
