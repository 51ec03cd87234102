package profile

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/morango-sync/morango/certs"
)

// loadSample loads the sample school's profile.
func loadSample(t *testing.T) *Profile {
	t.Helper()
	p, err := Load("../testdata/school/profile.json")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// schemaOf creates a database from the sample school's schema and returns
// its tables' columns as PRAGMA table_info lists them.
func schemaOf(t *testing.T, schemaFile string) map[string][]string {
	t.Helper()
	ddl, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "app.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(ddl)); err != nil {
		t.Fatal(err)
	}
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
		rows, err := db.Query(`SELECT name FROM pragma_table_info(?)`, n)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			tables[n] = append(tables[n], c)
		}
		rows.Close()
	}
	return tables
}

func TestSampleProfileMatchesSchema(t *testing.T) {
	p := loadSample(t)
	tables := schemaOf(t, "../testdata/school/schema.sql")
	if err := p.CheckSchema(tables); err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Models {
		if got := p.ModelForTable(m.Table); got != m {
			t.Errorf("ModelForTable(%s) = %v", m.Table, got)
		}
		if got := p.Model(m.Name); got != m {
			t.Errorf("Model(%s) = %v", m.Name, got)
		}
	}
	if len(tables) != len(p.Models) {
		t.Errorf("%d tables, %d models: every table of the sample syncs", len(tables), len(p.Models))
	}
	if p.Model("nope") != nil || p.ModelForTable("nope") != nil {
		t.Error("found a model that does not exist")
	}
}

// The sample's scope definitions are the original's, field for field, so
// that certificates the original made verify against it.
func TestSampleScopeDefinitionsAreTheOriginals(t *testing.T) {
	data, err := os.ReadFile("../testdata/morango/certificates.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Defs []json.RawMessage `json:"scope_definitions"`
	}
	if err := json.Unmarshal(data, &fixture); err != nil {
		t.Fatal(err)
	}
	p := loadSample(t)
	for _, raw := range fixture.Defs {
		var want certs.ScopeDefinition
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields() // every field of the original's row is compared
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		got, ok := p.ScopeDefinition(want.ID)
		if !ok {
			t.Errorf("no scope definition %q", want.ID)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("scope definition %q:\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
	if len(fixture.Defs) != 2 || len(p.ScopeDefinitions) != 2 {
		t.Errorf("%d definitions in the fixture, %d in the profile; want full-facility and single-user", len(fixture.Defs), len(p.ScopeDefinitions))
	}
	if _, ok := p.ScopeDefinition("nope"); ok {
		t.Error("found a scope definition that does not exist")
	}
}

func TestSampleOrdered(t *testing.T) {
	p := loadSample(t)
	order := p.Ordered()
	if len(order) != len(p.Models) {
		t.Fatalf("Ordered has %d models, want %d", len(order), len(p.Models))
	}
	pos := map[string]int{}
	for i, m := range order {
		pos[m.Name] = i
	}
	for _, m := range p.Models {
		for col, target := range m.ForeignKeys {
			if target != m.Name && pos[target] > pos[m.Name] {
				t.Errorf("%s (references %s by %s) comes before it", m.Name, target, col)
			}
		}
		for _, d := range m.Dependencies {
			if pos[d] > pos[m.Name] {
				t.Errorf("%s (depends on %s) comes before it", m.Name, d)
			}
		}
	}
	if order[0].Name != "facilitydataset" {
		t.Errorf("first model %s, want facilitydataset", order[0].Name)
	}
}

// Ties go in declaration order: the model declared first among those ready.
func TestOrderedTies(t *testing.T) {
	p, err := Parse([]byte(doc(
		`{"name": "c", "table": "c", "partition": "${id}", "foreign_keys": {"a_id": "a", "parent_id": "c"}}`,
		`{"name": "a", "table": "a", "partition": "${id}"}`,
		`{"name": "b", "table": "b", "partition": "${id}"}`,
		`{"name": "d", "table": "d", "partition": "${id}", "dependencies": ["b", "c"]}`,
		`{"name": "e", "table": "e", "partition": "${id}"}`)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range p.Ordered() {
		got = append(got, m.Name)
	}
	if want := []string{"a", "c", "b", "d", "e"}; !slices.Equal(got, want) {
		t.Errorf("Ordered = %v, want %v", got, want)
	}
}

func TestModelHelpers(t *testing.T) {
	p := loadSample(t)
	user := p.Model("facilityuser")
	if user.Synced("ui_theme") || !user.Synced("username") || !user.Synced("id") {
		t.Error("Synced is wrong for facilityuser")
	}
	if got := user.TemplateColumns(); !slices.Equal(got, []string{"dataset_id"}) {
		t.Errorf("facilityuser TemplateColumns = %v", got)
	}
	if got := p.Model("contentsummarylog").TemplateColumns(); !slices.Equal(got, []string{"dataset_id", "user_id", "content_id"}) {
		t.Errorf("contentsummarylog TemplateColumns = %v", got)
	}
	if got := user.SelfRef(); got != "" {
		t.Errorf("facilityuser SelfRef = %q", got)
	}
	tree := &Model{Name: "topic", ForeignKeys: map[string]string{"channel_id": "channel", "parent_id": "topic"}}
	if got := tree.SelfRef(); got != "parent_id" {
		t.Errorf("SelfRef = %q, want parent_id", got)
	}
}
