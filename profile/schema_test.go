package profile

import (
	"strings"
	"testing"
)

func TestCheckSchema(t *testing.T) {
	p, err := Parse([]byte(doc(
		`{"name": "user", "table": "user", "partition": "${dataset_id}:user-ro:${id}", "exclude": ["theme"]}`,
		`{"name": "log", "table": "log", "partition": "${dataset_id}:user-rw:${user_id}", "source_id": "${user_id}:${content_id}",
		  "foreign_keys": {"user_id": "user", "parent_id": "log"}, "exclude": ["draft"], "merge": {"prefer": "max", "column": "modified"}}`)))
	if err != nil {
		t.Fatal(err)
	}
	good := map[string][]string{
		"user": {"id", "dataset_id", "name", "theme"},
		"log":  {"id", "dataset_id", "user_id", "content_id", "parent_id", "draft", "modified"},
		"app":  {"id", "whatever"},
	}
	if err := p.CheckSchema(good); err != nil {
		t.Fatalf("good schema refused: %v", err)
	}
	without := func(table, column string) map[string][]string {
		out := map[string][]string{}
		for tbl, cols := range good {
			for _, c := range cols {
				if tbl != table || c != column {
					out[tbl] = append(out[tbl], c)
				}
			}
		}
		return out
	}
	cases := []struct {
		name   string
		tables map[string][]string
		want   string
	}{
		{"unknown table", map[string][]string{"log": good["log"]},
			`models[0] (user).table: the database has no table "user": create it`},
		{"table named in another case", map[string][]string{"User": good["user"], "log": good["log"]},
			`models[0] (user).table: the database has no table "user": the database has "User"`},
		{"no id column", without("user", "id"),
			`models[0] (user).table: table "user" has no "id" column`},
		{"unknown partition column", without("user", "dataset_id"),
			`models[0] (user).partition: table "user" has no column "dataset_id" (named in the partition template)`},
		{"unknown source-id column", without("log", "content_id"),
			`models[1] (log).source_id: table "log" has no column "content_id" (named in the source-id template)`},
		{"unknown foreign-key column", without("log", "parent_id"),
			`models[1] (log).foreign_keys.parent_id: table "log" has no column "parent_id" (named in a foreign key)`},
		{"unknown excluded column", without("user", "theme"),
			`models[0] (user).exclude[0]: table "user" has no column "theme" (named in exclude)`},
		{"unknown merge column", without("log", "modified"),
			`models[1] (log).merge.column: table "log" has no column "modified" (named in the merge rule)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := p.CheckSchema(c.tables)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}

	// A profile built in code, not parsed, is checked for excluded
	// columns it needs too.
	built := &Profile{Name: "p", Models: []*Model{{Name: "user", Table: "user", Partition: "${dataset_id}", Exclude: []string{"dataset_id"}}}}
	err = built.CheckSchema(good)
	if want := `models[0] (user).exclude[0]: column "dataset_id" cannot be excluded`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %s", err, want)
	}
}
