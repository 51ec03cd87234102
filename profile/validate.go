package profile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Limits of the original's columns: a profile name is stored in a
// certificate (at most 20 characters), a model name on every record (at
// most 40), a scope definition id at most 20.
const (
	maxProfileName = 20
	maxModelName   = 40
	maxScopeID     = 20
)

// enginePrefix starts the names of the engine's own tables.
const enginePrefix = "morango_"

// problems collects validation errors.
type problems []error

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, &Error{Field: field, Err: fmt.Errorf(format, args...)})
}

// modelField names models[i] in an error, with its name when it has one.
func modelField(i int, m *Model) string {
	if m == nil || m.Name == "" {
		return fmt.Sprintf("models[%d]", i)
	}
	return fmt.Sprintf("models[%d] (%s)", i, m.Name)
}

// validate checks the profile on its own and returns every problem.
func (p *Profile) validate() error {
	var ps problems
	switch {
	case p.Name == "":
		ps.add("profile", `the profile needs a name, e.g. "profile": "facilitydata"`)
	case len(p.Name) > maxProfileName || strings.ContainsFunc(p.Name, isSpaceOrControl):
		ps.add("profile", "%q: a name has at most %d characters and no spaces", p.Name, maxProfileName)
	}
	if len(p.Models) == 0 {
		ps.add("models", "the profile lists no models: add one per syncable table")
	}
	names, tables := map[string]int{}, map[string]int{}
	for i, m := range p.Models {
		if m == nil {
			ps.add(modelField(i, m), "null is not a model")
			continue
		}
		f := modelField(i, m)
		switch {
		case m.Name == "":
			ps.add(f+".name", "a model needs a name")
		case !isLowerIdent(m.Name) || len(m.Name) > maxModelName:
			ps.add(f+".name", "%q: a model name is lower-case letters, digits and _, at most %d characters", m.Name, maxModelName)
		default:
			if j, dup := names[m.Name]; dup {
				ps.add(f+".name", "duplicate model name %q (also models[%d]): model names are unique", m.Name, j)
			} else {
				names[m.Name] = i
			}
		}
		switch {
		case m.Table == "":
			ps.add(f+".table", "a model needs the name of its table")
		case strings.HasPrefix(strings.ToLower(m.Table), enginePrefix):
			ps.add(f+".table", "%q is a table of the sync engine (%s prefix), not of the app", m.Table, enginePrefix)
		default:
			if j, dup := tables[m.Table]; dup {
				ps.add(f+".table", "table %q is already synced by models[%d]: one model per table", m.Table, j)
			} else {
				tables[m.Table] = i
			}
		}
		m.validateTemplates(f, &ps)
		m.validateColumns(f, &ps)
		if m.Merge != nil {
			if m.Merge.Prefer != "max" && m.Merge.Prefer != "min" {
				ps.add(f+".merge.prefer", `%q: want "max" or "min"`, m.Merge.Prefer)
			}
			if m.Merge.Column == "" {
				ps.add(f+".merge.column", "a merge rule needs the column it compares")
			} else if !isIdent(m.Merge.Column) {
				ps.add(f+".merge.column", "%q is not a column name", m.Merge.Column)
			}
		}
	}
	for i, m := range p.Models {
		if m != nil {
			p.validateReferences(i, m, names, &ps)
		}
	}
	if field, cycle := p.cycle(); cycle != nil {
		ps.add(field, "dependency cycle %s: no model can be written first; remove one of these references", strings.Join(cycle, " -> "))
	}
	p.validateScopes(&ps)
	return errors.Join(ps...)
}

// validateTemplates checks the partition and source-id templates.
func (m *Model) validateTemplates(f string, ps *problems) {
	if m.Partition == "" {
		ps.add(f+".partition", `a model needs a partition template, e.g. "${dataset_id}:user-rw:${user_id}"`)
	} else if _, err := parseTemplate(m.Partition); err != nil {
		ps.add(f+".partition", "%v", err)
	}
	if m.SourceID == "" {
		return
	}
	if _, err := parseTemplate(m.SourceID); err != nil {
		ps.add(f+".source_id", "%v", err)
	} else if slices.Contains(refs(m.SourceID), "id") {
		ps.add(f+".source_id", "%q references ${id}, but the id is computed from the source id: use other columns", m.SourceID)
	}
}

// validateColumns checks the column names a model lists and that none it
// needs to sync is excluded.
func (m *Model) validateColumns(f string, ps *problems) {
	for _, col := range sortedKeys(m.ForeignKeys) {
		if !isIdent(col) {
			ps.add(f+".foreign_keys", "%q is not a column name", col)
		}
	}
	for j, col := range m.Exclude {
		if !isIdent(col) {
			ps.add(fmt.Sprintf("%s.exclude[%d]", f, j), "%q is not a column name", col)
		}
	}
	m.checkExcluded(f, ps)
	self := 0
	for _, col := range sortedKeys(m.ForeignKeys) {
		if m.ForeignKeys[col] == m.Name && m.Name != "" {
			self++
		}
	}
	if self > 1 {
		ps.add(f+".foreign_keys", "%d columns reference the model itself; at most one may (the one rows are ordered by)", self)
	}
}

// checkExcluded reports the columns the model needs to sync that it
// excludes.
func (m *Model) checkExcluded(f string, ps *problems) {
	var reported []string
	for _, n := range m.needed() {
		if !m.Synced(n.column) && !slices.Contains(reported, n.column) {
			reported = append(reported, n.column)
			ps.add(fmt.Sprintf("%s.exclude[%d]", f, slices.Index(m.Exclude, n.column)),
				"column %q cannot be excluded: %s needs it on every device; remove it from exclude", n.column, n.use)
		}
	}
}

// need is a column a model must sync, and what needs it.
type need struct{ column, use string }

// needed lists the columns a model must sync: its id, the columns of its
// templates, its foreign keys and its merge column.
func (m *Model) needed() []need {
	ns := []need{{"id", "every row's identity"}}
	for _, c := range refs(m.Partition) {
		ns = append(ns, need{c, "the partition template"})
	}
	for _, c := range refs(m.SourceID) {
		ns = append(ns, need{c, "the source-id template"})
	}
	for _, c := range sortedKeys(m.ForeignKeys) {
		ns = append(ns, need{c, "the foreign key"})
	}
	if m.Merge != nil && m.Merge.Column != "" {
		ns = append(ns, need{m.Merge.Column, "the merge rule"})
	}
	return ns
}

// validateReferences checks that foreign keys and dependencies name models
// of the profile.
func (p *Profile) validateReferences(i int, m *Model, names map[string]int, ps *problems) {
	f := modelField(i, m)
	for _, col := range sortedKeys(m.ForeignKeys) {
		target := m.ForeignKeys[col]
		if _, ok := names[target]; !ok {
			ps.add(f+".foreign_keys."+col, "unknown model %q%s", target, suggest(target, names))
		}
	}
	for j, d := range m.Dependencies {
		df := fmt.Sprintf("%s.dependencies[%d]", f, j)
		if d == m.Name {
			ps.add(df, "a model cannot depend on itself")
		} else if _, ok := names[d]; !ok {
			ps.add(df, "unknown model %q%s", d, suggest(d, names))
		}
	}
}

// suggest names a model whose name differs from name only in case or a
// trailing "s", as a hint.
func suggest(name string, names map[string]int) string {
	for _, cand := range []string{strings.ToLower(name), strings.TrimSuffix(strings.ToLower(name), "s")} {
		if _, ok := names[cand]; ok && cand != name {
			return fmt.Sprintf(" (did you mean %q?)", cand)
		}
	}
	return ""
}

// cycle finds a dependency cycle through foreign keys and dependencies. It
// returns the field of the cycle's first reference and the cycle's path
// (its first model repeated at the end), or a nil path.
func (p *Profile) cycle() (string, []string) {
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(name string) []string
	visit = func(name string) []string {
		switch state[name] {
		case active:
			return append(slices.Clone(path[slices.Index(path, name):]), name)
		case done:
			return nil
		}
		m := p.Model(name)
		if m == nil {
			return nil
		}
		state[name] = active
		path = append(path, name)
		for _, d := range m.deps() {
			if c := visit(d); c != nil {
				return c
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		return nil
	}
	for _, m := range p.Models {
		if m == nil || m.Name == "" {
			continue
		}
		c := visit(m.Name)
		if c == nil {
			continue
		}
		for i, first := range p.Models {
			if first != nil && first.Name == c[0] {
				return modelField(i, first) + first.referenceField(c[1]), c
			}
		}
	}
	return "", nil
}

// referenceField returns the field by which m references the model named
// target: ".foreign_keys.<column>" or ".dependencies[<n>]".
func (m *Model) referenceField(target string) string {
	for _, col := range sortedKeys(m.ForeignKeys) {
		if m.ForeignKeys[col] == target {
			return ".foreign_keys." + col
		}
	}
	if j := slices.Index(m.Dependencies, target); j >= 0 {
		return fmt.Sprintf(".dependencies[%d]", j)
	}
	return ""
}

// validateScopes checks the scope definitions.
func (p *Profile) validateScopes(ps *problems) {
	ids := map[string]int{}
	for i, sd := range p.ScopeDefinitions {
		f := fmt.Sprintf("scope_definitions[%d]", i)
		if sd.ID != "" {
			f += " (" + sd.ID + ")"
		}
		switch {
		case sd.ID == "":
			ps.add(f+".id", "a scope definition needs an id, e.g. \"single-user\"")
		case len(sd.ID) > maxScopeID || strings.ContainsFunc(sd.ID, isSpaceOrControl):
			ps.add(f+".id", "%q: an id has at most %d characters and no spaces", sd.ID, maxScopeID)
		default:
			if j, dup := ids[sd.ID]; dup {
				ps.add(f+".id", "duplicate scope definition id %q (also scope_definitions[%d])", sd.ID, j)
			} else {
				ids[sd.ID] = i
			}
		}
		if sd.Profile != p.Name {
			ps.add(f+".profile", "%q, but the profile is %q: certificates of this definition name the profile", sd.Profile, p.Name)
		}
		if sd.Version < 1 {
			ps.add(f+".version", "%d: versions start at 1", sd.Version)
		}
		if sd.PrimaryScopeParamKey != "" && !isIdent(sd.PrimaryScopeParamKey) {
			ps.add(f+".primary_scope_param_key", "%q is not a parameter name", sd.PrimaryScopeParamKey)
		}
		for _, t := range []struct{ field, tmpl string }{
			{"read_filter_template", sd.ReadFilterTemplate},
			{"write_filter_template", sd.WriteFilterTemplate},
			{"read_write_filter_template", sd.ReadWriteFilterTemplate},
		} {
			if _, err := parse(t.tmpl, true); err != nil {
				ps.add(f+"."+t.field, "%v", err)
			}
		}
	}
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}
