package store

import (
	"database/sql"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/morango-sync/morango/profile"
)

// Serialization renders a row's partition in SQL (templateSQL, with the
// row's id where the template has ${id}); an importer checks the partition
// a record's data renders in Go (Model.PartitionOf). The two must give the
// same text for every template and every value without the separator,
// including a template with a literal "${id}" ($${id}) and values holding
// "${id}", "$", "{" or "}": else an importer checks another partition than
// the one the record's data gives the app row, and refuses honest records.
// And the partition must fit its template (Model.FitsPartition), or every
// importer refuses the record.
func TestTemplateSQLAsGoRenders(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "t.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := rand.New(rand.NewPCG(11, 12))
	pieces := []string{"${id}", "${c1}", "${c2}", ":", "$$", "$${id}", "{id}", "{", "}", "a", "id", "."}
	values := []string{"${id}", "$", "{id}", "{", "}", "id", "a", ".", "$${id}", id[:5]}
	for i := range 3000 {
		var tmpl strings.Builder
		for range 1 + r.IntN(6) {
			tmpl.WriteString(pieces[r.IntN(len(pieces))])
		}
		cols := map[string]string{}
		for _, c := range []string{"c1", "c2"} {
			var v strings.Builder
			for range r.IntN(4) {
				v.WriteString(values[r.IntN(len(values))])
			}
			cols[c] = v.String()
		}
		m := &profile.Model{Name: "m", Partition: tmpl.String()}
		goPart, err := m.PartitionOf(id, func(c string) (string, bool) { v, ok := cols[c]; return v, ok })
		if err != nil {
			t.Fatalf("%q: %v", m.Partition, err)
		}
		var sqlPart string
		q := `SELECT ` + templateSQL(m.Partition, "t", "t.id") + ` FROM (SELECT ? AS id, ? AS c1, ? AS c2) t`
		if err := db.QueryRow(q, id, cols["c1"], cols["c2"]).Scan(&sqlPart); err != nil {
			t.Fatalf("%q: %v", m.Partition, err)
		}
		if goPart != sqlPart {
			t.Fatalf("case %d: template %q, values %q: SQL renders %q, Go %q", i, m.Partition, cols, sqlPart, goPart)
		}
		if !m.FitsPartition(id, sqlPart) {
			t.Fatalf("case %d: template %q, values %q: FitsPartition refuses %q", i, m.Partition, cols, sqlPart)
		}
	}
}
