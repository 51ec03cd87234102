// Package profile reads and validates profile files: which of an app's
// tables sync, how each row's partition and id are computed, what must be
// written before what, which columns stay local, how concurrent versions
// are ordered, and the scope definitions certificates refer to.
//
// The format is documented in docs/profile.md.
package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/ids"
)

// Error is a validation error of one field of a profile.
type Error struct {
	Field string
	Err   error
}

func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// maxProfileSize bounds a profile file.
const maxProfileSize = 4 << 20

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Load reads and validates a profile file.
func Load(path string) (*Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return p, nil
}

// Parse reads and validates a profile. Unknown fields are errors. All
// errors are reported, each naming its field.
func Parse(data []byte) (*Profile, error) {
	if len(data) > maxProfileSize {
		return nil, fmt.Errorf("profile is larger than %d bytes", maxProfileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile is not valid JSON for the format: %w", err)
	}
	if dec.More() {
		return nil, errors.New("profile has data after its JSON object")
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Profile) validate() error {
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &Error{Field: field, Err: fmt.Errorf(format, args...)})
	}
	if p.Name == "" {
		fail("profile", "the profile needs a name")
	} else if len(p.Name) > 20 || strings.ContainsAny(p.Name, " \t\n") {
		fail("profile", "%q: a name of at most 20 characters without spaces", p.Name)
	}
	if len(p.Models) == 0 {
		fail("models", "the profile lists no models")
	}
	names, tables := map[string]int{}, map[string]int{}
	for i, m := range p.Models {
		if m == nil {
			fail(fmt.Sprintf("models[%d]", i), "empty entry")
			continue
		}
		f := fmt.Sprintf("models[%d] (%s)", i, m.Name)
		switch {
		case m.Name == "":
			fail(fmt.Sprintf("models[%d].name", i), "a model needs a name")
		case !nameRE.MatchString(m.Name) || len(m.Name) > 40:
			fail(f+".name", "%q: lower-case letters, digits and _, at most 40", m.Name)
		}
		if j, dup := names[m.Name]; dup && m.Name != "" {
			fail(f+".name", "duplicate model name (also models[%d])", j)
		}
		names[m.Name] = i
		if m.Table == "" {
			fail(f+".table", "a model needs a table")
		} else if j, dup := tables[m.Table]; dup {
			fail(f+".table", "table %q is already synced by models[%d]", m.Table, j)
		}
		tables[m.Table] = i
		if m.Partition == "" {
			fail(f+".partition", "a model needs a partition template")
		} else if _, err := parseTemplate(m.Partition); err != nil {
			fail(f+".partition", "%v", err)
		}
		if m.SourceID != "" {
			if _, err := parseTemplate(m.SourceID); err != nil {
				fail(f+".source_id", "%v", err)
			}
		}
		if m.Merge != nil {
			if m.Merge.Prefer != "max" && m.Merge.Prefer != "min" {
				fail(f+".merge.prefer", "%q: want \"max\" or \"min\"", m.Merge.Prefer)
			}
			if m.Merge.Column == "" {
				fail(f+".merge.column", "a merge rule needs a column")
			}
		}
		selfRefs := 0
		for _, col := range sortedKeys(m.ForeignKeys) {
			if m.ForeignKeys[col] == m.Name {
				selfRefs++
			}
		}
		if selfRefs > 1 {
			fail(f+".foreign_keys", "at most one column may reference the model itself")
		}
	}
	for i, m := range p.Models {
		if m == nil {
			continue
		}
		f := fmt.Sprintf("models[%d] (%s)", i, m.Name)
		for _, col := range sortedKeys(m.ForeignKeys) {
			if _, ok := names[m.ForeignKeys[col]]; !ok {
				fail(f+".foreign_keys."+col, "unknown model %q", m.ForeignKeys[col])
			}
		}
		for j, d := range m.Dependencies {
			if _, ok := names[d]; !ok {
				fail(fmt.Sprintf("%s.dependencies[%d]", f, j), "unknown model %q", d)
			}
		}
	}
	if len(errs) == 0 {
		if cycle := p.cycle(); cycle != nil {
			fail("models", "dependency cycle: %s", strings.Join(cycle, " -> "))
		}
	}
	defs := map[string]int{}
	for i, sd := range p.ScopeDefinitions {
		f := fmt.Sprintf("scope_definitions[%d] (%s)", i, sd.ID)
		if sd.ID == "" || len(sd.ID) > 20 {
			fail(f+".id", "a scope definition needs an id of at most 20 characters")
		}
		if j, dup := defs[sd.ID]; dup {
			fail(f+".id", "duplicate scope definition (also scope_definitions[%d])", j)
		}
		defs[sd.ID] = i
		if sd.Profile != p.Name {
			fail(f+".profile", "%q, but the profile is %q", sd.Profile, p.Name)
		}
		if sd.Version < 1 {
			fail(f+".version", "must be at least 1")
		}
	}
	return errors.Join(errs...)
}

// deps returns the models m must follow: its foreign-key targets other than
// itself and its declared dependencies, sorted.
func (p *Profile) deps(m *Model) []string {
	var ds []string
	for _, t := range m.ForeignKeys {
		if t != m.Name {
			ds = append(ds, t)
		}
	}
	ds = append(ds, m.Dependencies...)
	sort.Strings(ds)
	return slices.Compact(ds)
}

// cycle returns a dependency cycle, or nil.
func (p *Profile) cycle() []string {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(name string) []string
	visit = func(name string) []string {
		switch state[name] {
		case visiting:
			i := slices.Index(path, name)
			return append(append([]string(nil), path[i:]...), name)
		case done:
			return nil
		}
		state[name] = visiting
		path = append(path, name)
		if m := p.Model(name); m != nil {
			for _, d := range p.deps(m) {
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		return nil
	}
	for _, m := range p.Models {
		if c := visit(m.Name); c != nil {
			return c
		}
	}
	return nil
}

// Model returns the model named name, or nil.
func (p *Profile) Model(name string) *Model {
	for _, m := range p.Models {
		if m != nil && m.Name == name {
			return m
		}
	}
	return nil
}

// ModelForTable returns the model syncing table, or nil.
func (p *Profile) ModelForTable(table string) *Model {
	for _, m := range p.Models {
		if m.Table == table {
			return m
		}
	}
	return nil
}

// Ordered returns the models in dependency order: every model after the
// models it references or depends on; otherwise in declaration order.
func (p *Profile) Ordered() []*Model {
	placed := map[string]bool{}
	var out []*Model
	for len(out) < len(p.Models) {
		progress := false
		for _, m := range p.Models {
			if placed[m.Name] {
				continue
			}
			ready := true
			for _, d := range p.deps(m) {
				if !placed[d] {
					ready = false
					break
				}
			}
			if ready {
				placed[m.Name] = true
				out = append(out, m)
				progress = true
			}
		}
		if !progress { // a cycle: validation refuses it; keep the rest in order
			for _, m := range p.Models {
				if !placed[m.Name] {
					placed[m.Name] = true
					out = append(out, m)
				}
			}
		}
	}
	return out
}

// ScopeDefinition returns the scope definition with the given id.
func (p *Profile) ScopeDefinition(id string) (certs.ScopeDefinition, bool) {
	for _, sd := range p.ScopeDefinitions {
		if sd.ID == id {
			return sd, true
		}
	}
	return certs.ScopeDefinition{}, false
}

var _ certs.Definitions = (*Profile)(nil)

// SelfRef returns the column that references the model itself, or "".
func (m *Model) SelfRef() string {
	for _, col := range sortedKeys(m.ForeignKeys) {
		if m.ForeignKeys[col] == m.Name {
			return col
		}
	}
	return ""
}

// Synced reports whether a column of the model's table is synced.
func (m *Model) Synced(column string) bool {
	return !slices.Contains(m.Exclude, column)
}

// TemplateColumns returns the columns the partition and source-id
// templates name, sorted, without duplicates.
func (m *Model) TemplateColumns() []string {
	var cols []string
	for _, t := range []string{m.Partition, m.SourceID} {
		parts, _ := parseTemplate(t)
		for _, p := range parts {
			if p.column != "" {
				cols = append(cols, p.column)
			}
		}
	}
	sort.Strings(cols)
	return slices.Compact(cols)
}

// CheckSchema checks the profile against an app database's tables (table →
// column names): every model's table exists with an "id" column, and every
// column the model names exists and is synced where it must be.
func (p *Profile) CheckSchema(tables map[string][]string) error {
	var errs []error
	for i, m := range p.Models {
		f := fmt.Sprintf("models[%d] (%s)", i, m.Name)
		cols, ok := tables[m.Table]
		if !ok {
			errs = append(errs, &Error{f + ".table", fmt.Errorf("the database has no table %q", m.Table)})
			continue
		}
		has := func(c string) bool { return slices.Contains(cols, c) }
		if !has("id") {
			errs = append(errs, &Error{f + ".table", fmt.Errorf("table %q has no \"id\" column (a TEXT primary key of 32 hex digits)", m.Table)})
		}
		check := func(field, col string, mustSync bool) {
			switch {
			case col == "id" && field != f+".exclude":
			case !has(col):
				errs = append(errs, &Error{field, fmt.Errorf("table %q has no column %q", m.Table, col)})
			case mustSync && !m.Synced(col):
				errs = append(errs, &Error{field, fmt.Errorf("column %q is excluded from sync but needed", col)})
			}
		}
		for _, t := range []struct{ field, tmpl string }{{f + ".partition", m.Partition}, {f + ".source_id", m.SourceID}} {
			parts, _ := parseTemplate(t.tmpl)
			for _, pt := range parts {
				if pt.column != "" {
					check(t.field, pt.column, true)
				}
			}
		}
		for _, col := range sortedKeys(m.ForeignKeys) {
			check(f+".foreign_keys."+col, col, true)
		}
		for j, col := range m.Exclude {
			if col == "id" {
				errs = append(errs, &Error{fmt.Sprintf("%s.exclude[%d]", f, j), errors.New("the id column cannot be excluded")})
				continue
			}
			check(fmt.Sprintf("%s.exclude[%d]", f, j), col, false)
		}
		if m.Merge != nil {
			check(f+".merge.column", m.Merge.Column, true)
		}
	}
	return errors.Join(errs...)
}

// Identity is where a row belongs: its id, partition and source id.
type Identity struct {
	ID, Partition, SourceID string
}

// IDMismatchError says a row of a model with a source id has another id
// than the one its partition, source id and model give.
type IDMismatchError struct {
	Model, Got, Want string
}

func (e *IDMismatchError) Error() string {
	return fmt.Sprintf("%s row %s: id must be %s (insert rows of this model with the id 'morango id' prints)", e.Model, e.Got, e.Want)
}

// Identify computes a row's identity from its id and column values (get
// returns ok=false for a missing or NULL value). For a model with a
// source-id template, the id must be the namespaced id of the raw partition
// (with ${id} in it), the source id and the model name.
func (m *Model) Identify(id string, get func(column string) (string, bool)) (Identity, error) {
	raw, err := render(m.Partition, id, true, get)
	if err != nil {
		return Identity{}, fmt.Errorf("%s partition: %w", m.Name, err)
	}
	idn := Identity{ID: id}
	if m.SourceID != "" {
		if idn.SourceID, err = render(m.SourceID, id, false, get); err != nil {
			return Identity{}, fmt.Errorf("%s source id: %w", m.Name, err)
		}
		if want := ids.Namespaced(raw, idn.SourceID, m.Name); want != id {
			return Identity{}, &IDMismatchError{Model: m.Name, Got: id, Want: want}
		}
	} else if !ids.Valid(id) {
		return Identity{}, fmt.Errorf("%s row %q: id must be 32 lower-case hex digits", m.Name, id)
	}
	idn.Partition = ids.FinalPartition(raw, id)
	return idn, nil
}

// ComputeID returns the id a row of a model with a source-id template must
// have.
func (m *Model) ComputeID(get func(column string) (string, bool)) (string, error) {
	if m.SourceID == "" {
		return "", fmt.Errorf("model %s has no source-id template: its ids are the app's own", m.Name)
	}
	raw, err := render(m.Partition, "", true, get)
	if err != nil {
		return "", err
	}
	src, err := render(m.SourceID, "", false, get)
	if err != nil {
		return "", err
	}
	return ids.Namespaced(raw, src, m.Name), nil
}

type templatePart struct {
	literal string
	column  string
}

// parseTemplate splits a template into literal text and ${column}
// references; $$ is a literal $.
func parseTemplate(t string) ([]templatePart, error) {
	var parts []templatePart
	var lit strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '$' {
			lit.WriteByte(t[i])
			continue
		}
		switch {
		case i+1 < len(t) && t[i+1] == '$':
			lit.WriteByte('$')
			i++
		case i+1 < len(t) && t[i+1] == '{':
			end := strings.IndexByte(t[i+2:], '}')
			if end < 0 {
				return nil, fmt.Errorf("template %q: unterminated ${", t)
			}
			name := t[i+2 : i+2+end]
			if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(name) {
				return nil, fmt.Errorf("template %q: bad column reference ${%s}", t, name)
			}
			if lit.Len() > 0 {
				parts = append(parts, templatePart{literal: lit.String()})
				lit.Reset()
			}
			parts = append(parts, templatePart{column: name})
			i += 2 + end
		default:
			return nil, fmt.Errorf("template %q: a lone $ (write $$ for a dollar sign)", t)
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, templatePart{literal: lit.String()})
	}
	return parts, nil
}

// render substitutes a template; ${id} stays literal when keepID is set,
// else it becomes id.
func render(t, id string, keepID bool, get func(string) (string, bool)) (string, error) {
	parts, err := parseTemplate(t)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		switch {
		case p.column == "":
			b.WriteString(p.literal)
		case p.column == "id" && keepID:
			b.WriteString(ids.IDPlaceholder)
		case p.column == "id":
			b.WriteString(id)
		default:
			v, ok := get(p.column)
			if !ok {
				return "", fmt.Errorf("column %s is missing or NULL", p.column)
			}
			b.WriteString(v)
		}
	}
	return b.String(), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
