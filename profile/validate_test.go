package profile

import (
	"errors"
	"strings"
	"testing"
)

// doc builds a profile file named "p" from model objects.
func doc(models ...string) string {
	return `{"profile": "p", "models": [` + strings.Join(models, ",") + `]}`
}

// docWithScopes builds a profile file with one model and the given scope
// definitions.
func docWithScopes(defs ...string) string {
	return `{"profile": "p", "models": [{"name": "a", "table": "a", "partition": "${id}"}],
		"scope_definitions": [` + strings.Join(defs, ",") + `]}`
}

const goodScope = `{"id": "s", "profile": "p", "version": 1, "primary_scope_param_key": "dataset_id",
	"description": "", "read_filter_template": "", "write_filter_template": "", "read_write_filter_template": "${dataset_id}"}`

// refusals each break one rule; the error must name the field at fault.
var refusals = []struct {
	name, doc string
	want      string // the error's text contains this
}{
	{"no profile name", `{"models": [{"name": "a", "table": "a", "partition": "${id}"}]}`,
		`profile: the profile needs a name`},
	{"profile name with a space", `{"profile": "my app", "models": [{"name": "a", "table": "a", "partition": "${id}"}]}`,
		`profile: "my app": a name has at most 20 characters and no spaces`},
	{"no models", `{"profile": "p", "models": []}`,
		`models: the profile lists no models`},
	{"null model", doc(`null`),
		`models[0]: null is not a model`},
	{"model without a name", doc(`{"table": "a", "partition": "${id}"}`),
		`models[0].name: a model needs a name`},
	{"model name not lower-case", doc(`{"name": "Users", "table": "a", "partition": "${id}"}`),
		`models[0] (Users).name: "Users": a model name is lower-case letters`},
	{"duplicate model name", doc(`{"name": "a", "table": "a", "partition": "${id}"}`, `{"name": "a", "table": "b", "partition": "${id}"}`),
		`models[1] (a).name: duplicate model name "a" (also models[0])`},
	{"model without a table", doc(`{"name": "a", "partition": "${id}"}`),
		`models[0] (a).table: a model needs the name of its table`},
	{"duplicate table", doc(`{"name": "a", "table": "t", "partition": "${id}"}`, `{"name": "b", "table": "t", "partition": "${id}"}`),
		`models[1] (b).table: table "t" is already synced by models[0]`},
	{"engine table", doc(`{"name": "a", "table": "morango_store", "partition": "${id}"}`),
		`models[0] (a).table: "morango_store" is a table of the sync engine`},
	{"no partition", doc(`{"name": "a", "table": "a"}`),
		`models[0] (a).partition: a model needs a partition template`},
	{"unterminated reference", doc(`{"name": "a", "table": "a", "partition": "${dataset_id:user"}`),
		`models[0] (a).partition: unterminated reference at offset 0 of "${dataset_id:user"`},
	{"empty reference", doc(`{"name": "a", "table": "a", "partition": "x:${}"}`),
		`models[0] (a).partition: empty reference ${} at offset 2`},
	{"bad reference name", doc(`{"name": "a", "table": "a", "partition": "${user-id}"}`),
		`models[0] (a).partition: bad reference ${user-id}`},
	{"lone dollar", doc(`{"name": "a", "table": "a", "partition": "$dataset_id"}`),
		`models[0] (a).partition: lone $ at offset 0`},
	{"bad source-id template", doc(`{"name": "a", "table": "a", "partition": "${id}", "source_id": "${user_id"}`),
		`models[0] (a).source_id: unterminated reference`},
	{"source id from the id", doc(`{"name": "a", "table": "a", "partition": "p", "source_id": "${id}"}`),
		`models[0] (a).source_id: "${id}" references ${id}`},
	{"unknown foreign-key target", doc(
		`{"name": "facilityuser", "table": "facilityuser", "partition": "${id}"}`,
		`{"name": "classroom", "table": "classroom", "partition": "${id}"}`,
		`{"name": "membership", "table": "membership", "partition": "${user_id}", "foreign_keys": {"user_id": "users", "classroom_id": "classroom"}}`),
		`models[2] (membership).foreign_keys.user_id: unknown model "users"`},
	{"foreign key differing in case", doc(`{"name": "a", "table": "a", "partition": "${id}", "foreign_keys": {"b_id": "B"}}`, `{"name": "b", "table": "b", "partition": "${id}"}`),
		`models[0] (a).foreign_keys.b_id: unknown model "B" (did you mean "b"?)`},
	{"bad foreign-key column", doc(`{"name": "a", "table": "a", "partition": "${id}", "foreign_keys": {"b id": "a"}}`),
		`models[0] (a).foreign_keys: "b id" is not a column name`},
	{"two self-references", doc(`{"name": "a", "table": "a", "partition": "${id}", "foreign_keys": {"parent_id": "a", "twin_id": "a"}}`),
		`models[0] (a).foreign_keys: 2 columns reference the model itself`},
	{"unknown dependency", doc(`{"name": "a", "table": "a", "partition": "${id}", "dependencies": ["b", "nope"]}`, `{"name": "b", "table": "b", "partition": "${id}"}`),
		`models[0] (a).dependencies[1]: unknown model "nope"`},
	{"self dependency", doc(`{"name": "a", "table": "a", "partition": "${id}", "dependencies": ["a"]}`),
		`models[0] (a).dependencies[0]: a model cannot depend on itself`},
	{"dependency cycle", doc(
		`{"name": "a", "table": "a", "partition": "${id}", "dependencies": ["b"]}`,
		`{"name": "b", "table": "b", "partition": "${id}", "foreign_keys": {"c_id": "c"}}`,
		`{"name": "c", "table": "c", "partition": "${id}", "dependencies": ["a"]}`),
		`models[0] (a).dependencies[0]: dependency cycle a -> b -> c -> a`},
	{"cycle through foreign keys", doc(
		`{"name": "x", "table": "x", "partition": "${id}"}`,
		`{"name": "a", "table": "a", "partition": "${id}", "foreign_keys": {"b_id": "b"}}`,
		`{"name": "b", "table": "b", "partition": "${id}", "foreign_keys": {"a_id": "a", "x_id": "x"}}`),
		`models[1] (a).foreign_keys.b_id: dependency cycle a -> b -> a`},
	{"bad merge preference", doc(`{"name": "a", "table": "a", "partition": "${id}", "merge": {"prefer": "newest", "column": "modified"}}`),
		`models[0] (a).merge.prefer: "newest": want "max" or "min"`},
	{"merge without a column", doc(`{"name": "a", "table": "a", "partition": "${id}", "merge": {"prefer": "max"}}`),
		`models[0] (a).merge.column: a merge rule needs the column it compares`},
	{"excluded id", doc(`{"name": "a", "table": "a", "partition": "${id}", "exclude": ["theme", "id"]}`),
		`models[0] (a).exclude[1]: column "id" cannot be excluded: every row's identity needs it`},
	{"excluded template column", doc(`{"name": "a", "table": "a", "partition": "${dataset_id}", "exclude": ["dataset_id"]}`),
		`models[0] (a).exclude[0]: column "dataset_id" cannot be excluded: the partition template needs it`},
	{"excluded source-id column", doc(`{"name": "a", "table": "a", "partition": "p", "source_id": "${name}", "exclude": ["name"]}`),
		`models[0] (a).exclude[0]: column "name" cannot be excluded: the source-id template needs it`},
	{"excluded foreign key", doc(`{"name": "a", "table": "a", "partition": "${id}", "foreign_keys": {"parent_id": "a"}, "exclude": ["parent_id"]}`),
		`models[0] (a).exclude[0]: column "parent_id" cannot be excluded: the foreign key needs it`},
	{"excluded merge column", doc(`{"name": "a", "table": "a", "partition": "${id}", "merge": {"prefer": "max", "column": "modified"}, "exclude": ["modified"]}`),
		`models[0] (a).exclude[0]: column "modified" cannot be excluded: the merge rule needs it`},
	{"bad excluded column", doc(`{"name": "a", "table": "a", "partition": "${id}", "exclude": [""]}`),
		`models[0] (a).exclude[0]: "" is not a column name`},
	{"scope without an id", docWithScopes(strings.Replace(goodScope, `"id": "s"`, `"id": ""`, 1)),
		`scope_definitions[0].id: a scope definition needs an id`},
	{"scope id too long", docWithScopes(strings.Replace(goodScope, `"id": "s"`, `"id": "a-very-long-scope-definition"`, 1)),
		`scope_definitions[0] (a-very-long-scope-definition).id: "a-very-long-scope-definition": an id has at most 20 characters`},
	{"duplicate scope id", docWithScopes(goodScope, goodScope),
		`scope_definitions[1] (s).id: duplicate scope definition id "s" (also scope_definitions[0])`},
	{"scope of another profile", docWithScopes(strings.Replace(goodScope, `"profile": "p"`, `"profile": "facilitydata"`, 1)),
		`scope_definitions[0] (s).profile: "facilitydata", but the profile is "p"`},
	{"scope version 0", docWithScopes(strings.Replace(goodScope, `"version": 1`, `"version": 0`, 1)),
		`scope_definitions[0] (s).version: 0: versions start at 1`},
	{"bad scope template", docWithScopes(strings.Replace(goodScope, `"read_filter_template": ""`, `"read_filter_template": "${dataset_id:allusers-ro"`, 1)),
		`scope_definitions[0] (s).read_filter_template: unterminated reference`},
	{"lone dollar in a scope template", docWithScopes(strings.Replace(goodScope, `"write_filter_template": ""`, `"write_filter_template": "$:anonymous"`, 1)),
		`scope_definitions[0] (s).write_filter_template: lone $`},
	{"bad primary parameter", docWithScopes(strings.Replace(goodScope, `"primary_scope_param_key": "dataset_id"`, `"primary_scope_param_key": "dataset id"`, 1)),
		`scope_definitions[0] (s).primary_scope_param_key: "dataset id" is not a parameter name`},
	{"unknown field", doc(`{"name": "a", "table": "a", "partition": "${id}", "partiton": "x"}`),
		`unknown field "partiton"`},
	{"wrong type", `{"profile": "p", "models": [{"name": "a", "table": "a", "partition": "${id}", "exclude": "x"}]}`,
		`models.exclude: a JSON string cannot be a []string`},
	{"trailing data", doc(`{"name": "a", "table": "a", "partition": "${id}"}`) + ` {}`,
		`profile has more data after its JSON object`},
	{"trailing bracket", doc(`{"name": "a", "table": "a", "partition": "${id}"}`) + `]`,
		`profile has more data after its JSON object`},
	{"not JSON", `profile: p`, `profile is not valid`},
	{"too large", doc(`{"name": "a", "table": "a", "partition": "${id}", "exclude": ["` + strings.Repeat("x", maxSize) + `"]}`),
		`profile is larger than 1048576 bytes`},
}

func TestParseRefuses(t *testing.T) {
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatalf("Parse accepted the profile: %+v", p)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
}

// Every problem is reported, each an *Error, not only the first.
func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(doc(
		`{"name": "a", "table": "a", "partition": "${x", "foreign_keys": {"b_id": "nope"}}`,
		`{"name": "a", "table": "b", "partition": "${id}", "merge": {"prefer": "max"}}`)))
	if err == nil {
		t.Fatal("accepted")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("%T is not a joined error", err)
	}
	var fields []string
	for _, e := range joined.Unwrap() {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("%v is not an *Error", e)
		}
		fields = append(fields, pe.Field)
	}
	want := []string{
		"models[0] (a).partition",
		"models[1] (a).name",
		"models[1] (a).merge.column",
		"models[0] (a).foreign_keys.b_id",
	}
	if strings.Join(fields, "\n") != strings.Join(want, "\n") {
		t.Errorf("fields\n%s\nwant\n%s", strings.Join(fields, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseAcceptsTemplates(t *testing.T) {
	p, err := Parse([]byte(doc(
		`{"name": "a", "table": "a", "partition": "$${dataset_id}:cost-$$:${Dataset_ID2}"}`,
		`{"name": "b", "table": "b", "partition": "${id}", "source_id": "${a_id}:${name}", "foreign_keys": {"a_id": "a", "parent_id": "b"}, "exclude": ["theme"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Model("a").TemplateColumns(); strings.Join(got, ",") != "Dataset_ID2" {
		t.Errorf("TemplateColumns = %q", got)
	}
	id, err := p.Model("a").Identify("0123456789abcdef0123456789abcdef", func(c string) (string, bool) { return "D", c == "Dataset_ID2" })
	if err != nil || id.Partition != "${dataset_id}:cost-$:D" {
		t.Errorf("Identify = %+v, %v", id, err)
	}
}

// A scope template may use $name as well as ${name}, as the original's do.
func TestScopeTemplateBareNames(t *testing.T) {
	def := strings.Replace(goodScope, `"read_filter_template": ""`, `"read_filter_template": "$dataset_id:allusers-ro\n$$x"`, 1)
	if _, err := Parse([]byte(docWithScopes(def))); err != nil {
		t.Fatal(err)
	}
}
