// Package profile reads and validates profile files. A profile says what an
// application syncs: which of its tables are syncable models, how each
// row's partition (and, for some models, its id) is computed from its
// columns, what must be written before what, which columns stay on the
// device, how concurrent versions of a row are ordered, and the scope
// definitions that certificates refer to.
//
// A profile is one JSON file:
//
//	{
//	  "profile": "facilitydata",
//	  "models": [
//	    {"name": "facilityuser", "table": "facilityuser",
//	     "partition": "${dataset_id}:user-ro:${id}", "exclude": ["ui_theme"]},
//	    {"name": "contentsummarylog", "table": "contentsummarylog",
//	     "partition": "${dataset_id}:user-rw:${user_id}",
//	     "source_id": "${user_id}:${content_id}",
//	     "foreign_keys": {"user_id": "facilityuser"},
//	     "merge": {"prefer": "max", "column": "modified"}}
//	  ],
//	  "scope_definitions": [ … ]
//	}
//
// [Parse] and [Load] check the file on its own; [Profile.CheckSchema]
// checks it against the app's tables. Every problem is reported, each as an
// [*Error] naming the field at fault:
//
//	models[1] (contentsummarylog).foreign_keys.user_id: unknown model "users"
//
// A row's identity — its id, partition and source id — comes from
// [Model.Identify]; models with a source-id template have computed ids
// ([Model.ComputeID]), the namespaced ids of the original Morango, so that
// devices creating "the same" row converge on one.
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
	"slices"
	"strings"

	"github.com/morango-sync/morango/certs"
)

// maxSize bounds a profile file in bytes.
const maxSize = 1 << 20

// Error is a problem with one field of a profile. Field is a path such as
// "models[2] (membership).foreign_keys.user_id".
type Error struct {
	Field string
	Err   error
}

func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Load reads and validates a profile file.
func Load(path string) (*Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("load profile %s: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return p, nil
}

// Parse reads and validates a profile. It accepts exactly one JSON object
// with no unknown fields, then checks the profile on its own (without the
// app's database) and reports every problem it finds, joined.
func Parse(data []byte) (*Profile, error) {
	if len(data) > maxSize {
		return nil, fmt.Errorf("profile is larger than %d bytes", maxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile is not valid: %w", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("profile has more data after its JSON object")
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// jsonError turns a decoding error into an *Error where it names a field,
// and says what to do about the others.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return &Error{Field: te.Field, Err: fmt.Errorf("a JSON %s cannot be a %s", te.Value, te.Type)}
	case errors.As(err, &se):
		return fmt.Errorf("%w at byte %d: the file is not JSON there", err, se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("%w: the JSON ends before it is complete (a missing } or ], or a cut file)", err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("%s: no such field; docs/profile.md lists the fields", strings.TrimPrefix(err.Error(), "json: "))
	}
	return err
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

// ModelForTable returns the model that syncs table, or nil.
func (p *Profile) ModelForTable(table string) *Model {
	for _, m := range p.Models {
		if m != nil && m.Table == table {
			return m
		}
	}
	return nil
}

// ScopeDefinition returns the scope definition with the given id and
// whether there is one.
func (p *Profile) ScopeDefinition(id string) (certs.ScopeDefinition, bool) {
	for _, sd := range p.ScopeDefinitions {
		if sd.ID == id {
			return sd, true
		}
	}
	return certs.ScopeDefinition{}, false
}

// deps returns the names of the models m must come after: the targets of
// its foreign keys, then its declared dependencies, each once and never m
// itself.
func (m *Model) deps() []string {
	var ds []string
	add := func(name string) {
		if name != m.Name && !slices.Contains(ds, name) {
			ds = append(ds, name)
		}
	}
	for _, col := range sortedKeys(m.ForeignKeys) {
		add(m.ForeignKeys[col])
	}
	for _, d := range m.Dependencies {
		add(d)
	}
	return ds
}

// Ordered returns the models in dependency order: every model after the
// targets of its foreign keys (other than itself) and its dependencies.
// Among the models ready to go next, the one declared first goes first, so
// a profile already in dependency order keeps its order. Names of unknown
// models are ignored; models caught in a cycle (which validation refuses)
// follow the others in declaration order.
func (p *Profile) Ordered() []*Model {
	index := map[string]int{}
	for i, m := range p.Models {
		if m == nil {
			continue
		}
		if _, dup := index[m.Name]; !dup {
			index[m.Name] = i
		}
	}
	// waiting[i] counts the models i waits for; next[j] are those waiting for j.
	waiting := make([]int, len(p.Models))
	next := make([][]int, len(p.Models))
	for i, m := range p.Models {
		if m == nil {
			continue
		}
		for _, d := range m.deps() {
			if j, ok := index[d]; ok && j != i {
				waiting[i]++
				next[j] = append(next[j], i)
			}
		}
	}
	var ready indexHeap
	for i, m := range p.Models {
		if m != nil && waiting[i] == 0 {
			ready.push(i)
		}
	}
	out := make([]*Model, 0, len(p.Models))
	placed := make([]bool, len(p.Models))
	for len(ready) > 0 {
		i := ready.pop()
		placed[i] = true
		out = append(out, p.Models[i])
		for _, k := range next[i] {
			if waiting[k]--; waiting[k] == 0 {
				ready.push(k)
			}
		}
	}
	for i, m := range p.Models {
		if m != nil && !placed[i] {
			out = append(out, m)
		}
	}
	return out
}

// indexHeap is a min-heap of model indexes.
type indexHeap []int

func (h *indexHeap) push(i int) {
	*h = append(*h, i)
	s := *h
	for c := len(s) - 1; c > 0; {
		p := (c - 1) / 2
		if s[p] <= s[c] {
			break
		}
		s[p], s[c] = s[c], s[p]
		c = p
	}
}

func (h *indexHeap) pop() int {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for p := 0; ; {
		c := 2*p + 1
		if c >= len(s) {
			break
		}
		if c+1 < len(s) && s[c+1] < s[c] {
			c++
		}
		if s[p] <= s[c] {
			break
		}
		s[p], s[c] = s[c], s[p]
		p = c
	}
	*h = s
	return top
}

// SelfRef returns the foreign-key column that references the model itself,
// or "" if there is none. Validation allows at most one.
func (m *Model) SelfRef() string {
	for _, col := range sortedKeys(m.ForeignKeys) {
		if m.ForeignKeys[col] == m.Name {
			return col
		}
	}
	return ""
}

// Synced reports whether a column of the model's table is synced, that is,
// not excluded.
func (m *Model) Synced(column string) bool {
	return !slices.Contains(m.Exclude, column)
}

// TemplateColumns returns the columns the partition and source-id
// templates read from a row, in order of first use, without duplicates.
// The row's own id, ${id}, is not among them.
func (m *Model) TemplateColumns() []string {
	var cols []string
	for _, t := range []string{m.Partition, m.SourceID} {
		for _, c := range refs(t) {
			if c != "id" && !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	return cols
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
