package profile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CheckSchema checks the profile against the app's database, given as its
// tables and each table's column names (as PRAGMA table_info lists them).
// Every model's table must exist and have an "id" column; every column the
// model names — in its templates, foreign keys, excludes and merge rule —
// must exist; and the id, template, foreign-key and merge columns must not
// be excluded. Every problem is reported, joined, each as an *Error.
func (p *Profile) CheckSchema(tables map[string][]string) error {
	var ps problems
	for i, m := range p.Models {
		if m == nil {
			continue
		}
		f := modelField(i, m)
		cols, ok := tables[m.Table]
		if !ok {
			hint := "create it in the app's database or correct the name"
			for t := range tables {
				if strings.EqualFold(t, m.Table) {
					hint = fmt.Sprintf("the database has %q: write the name as the database does", t)
				}
			}
			ps.add(f+".table", "the database has no table %q: %s", m.Table, hint)
			continue
		}
		if !slices.Contains(cols, "id") {
			ps.add(f+".table", `table %q has no "id" column: a syncable table needs a TEXT primary key "id" holding 32 hex digits`, m.Table)
		}
		missing := func(field, col, use string) {
			if col != "" && !slices.Contains(cols, col) {
				ps.add(field, "table %q has no column %q (named in %s): add the column or correct the name", m.Table, col, use)
			}
		}
		for _, c := range refs(m.Partition) {
			if c != "id" {
				missing(f+".partition", c, "the partition template")
			}
		}
		for _, c := range refs(m.SourceID) {
			missing(f+".source_id", c, "the source-id template")
		}
		for _, col := range sortedKeys(m.ForeignKeys) {
			missing(f+".foreign_keys."+col, col, "a foreign key")
		}
		for j, col := range m.Exclude {
			missing(fmt.Sprintf("%s.exclude[%d]", f, j), col, "exclude")
		}
		if m.Merge != nil {
			missing(f+".merge.column", m.Merge.Column, "the merge rule")
		}
		m.checkExcluded(f, &ps)
	}
	return errors.Join(ps...)
}
