package profile

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/morango-sync/morango/ids"
)

// Identity is where a row belongs: its id, its partition (with ${id}
// replaced by the id) and its source id ("" for a model without a
// source-id template).
type Identity struct {
	ID, Partition, SourceID string
}

// IDMismatchError says that a row of a model with a source-id template does
// not have the id its partition, source id and model name give.
type IDMismatchError struct {
	Model string
	// Got is the row's id, Want the id it must have.
	Got, Want string
}

func (e *IDMismatchError) Error() string {
	return fmt.Sprintf("%s row %s has the wrong id: it must be %s, the namespaced id of its partition, source id and model; "+
		"insert rows of %s with the id that \"morango id\" prints", e.Model, e.Got, e.Want, e.Model)
}

// Identify computes a row's identity from its id and its column values; get
// returns a column's value as text, or ok=false when the column is missing
// or NULL.
//
// The raw partition is the partition template with every ${column}
// substituted except ${id}, which stays literal. For a model with a
// source-id template the source id is that template's rendering, and the
// row's id must be ids.Namespaced(raw partition, source id, model name),
// else the error is an *IDMismatchError. For other models the source id is
// "" and the id must be 32 lower-case hex digits. The partition is the
// template with the id in place of each of its ${id}: the raw partition
// with ${id} replaced by the id, but for a "${id}" that a value or the
// template's literal text spells, which stays.
func (m *Model) Identify(id string, get func(column string) (value string, ok bool)) (Identity, error) {
	raw, src, err := m.raw(get)
	if err != nil {
		return Identity{}, err
	}
	if m.SourceID != "" {
		if want := ids.Namespaced(raw, src, m.Name); id != want {
			return Identity{}, &IDMismatchError{Model: m.Name, Got: id, Want: want}
		}
	} else if !ids.Valid(id) {
		return Identity{}, fmt.Errorf("%s row %q: an id is 32 lower-case hex digits", m.Name, id)
	}
	final, err := renderID(m.Partition, id, true, get)
	if err != nil {
		return Identity{}, fmt.Errorf("%s partition: %w", m.Name, err)
	}
	return Identity{ID: id, Partition: final, SourceID: src}, nil
}

// PartitionOf renders the partition a row's column values give (get as
// for Identify), without checking its id: what a receiver compares with
// the scope of the certificate that signed the row's record.
func (m *Model) PartitionOf(id string, get func(column string) (value string, ok bool)) (string, error) {
	p, err := renderID(m.Partition, id, true, get)
	if err != nil {
		return "", fmt.Errorf("%s partition: %w", m.Name, err)
	}
	return p, nil
}

// PartitionSeparator separates the parts of a partition. A value that a
// partition template takes from a row may not contain it: filters match
// partitions by prefix, so a value "a:user-rw:b" would let a row render a
// partition under another's prefix while its columns say otherwise.
const PartitionSeparator = ":"

// PartitionColumns returns the columns the partition template takes values
// from (${id} aside), in order of first use.
func (m *Model) PartitionColumns() []string {
	return shapeOf(m.Partition).cols
}

// FitsPartition reports whether partition is one the model's template
// renders for the row id: the template's literal text where it has text,
// id where it has ${id}, and for each other column a value without the
// PartitionSeparator.
func (m *Model) FitsPartition(id, partition string) bool {
	sh := shapeOf(m.Partition)
	if sh.err != nil || strings.Count(partition, PartitionSeparator) != len(sh.parts)-1 {
		return false
	}
	// Values hold no separator: each of the template's separators is one
	// of the partition's, and each part between them is matched alone.
	for _, p := range sh.parts {
		var got string
		got, partition, _ = strings.Cut(partition, PartitionSeparator)
		if !globMatch(p, id, got) {
			return false
		}
	}
	return true
}

// shape is a partition template split at its separators; each part is a
// list of pieces: literal text, ${id}, or a column (any text).
type shape struct {
	parts [][]part
	cols  []string
	err   error
}

// shapes caches shapeOf by template.
var shapes sync.Map

func shapeOf(t string) *shape {
	if sh, ok := shapes.Load(t); ok {
		return sh.(*shape)
	}
	sh := &shape{}
	parts, err := parseTemplate(t)
	if err != nil {
		sh.err = err
	}
	cur := []part{}
	for _, p := range parts {
		if p.ref != "" {
			if p.ref != "id" && !slices.Contains(sh.cols, p.ref) {
				sh.cols = append(sh.cols, p.ref)
			}
			cur = append(cur, p)
			continue
		}
		pieces := strings.Split(p.literal, PartitionSeparator)
		for i, lit := range pieces {
			if i > 0 {
				sh.parts = append(sh.parts, cur)
				cur = []part{}
			}
			if lit != "" {
				cur = append(cur, part{literal: lit})
			}
		}
	}
	sh.parts = append(sh.parts, cur)
	shapes.Store(t, sh)
	return sh
}

// globMatch reports whether s is the pieces in order, with id for ${id}
// and any text for a column. Literal text and the id are matched exactly:
// those before the first column at the start, those after the last at the
// end, and each run between columns at its leftmost place after the run
// before, which is where a match is if there is one, as any text can fill
// the columns between.
func globMatch(pieces []part, id, s string) bool {
	text := func(p part) (string, bool) {
		switch p.ref {
		case "":
			return p.literal, true
		case "id":
			return id, true
		}
		return "", false
	}
	// Leading text, up to the first column.
	i := 0
	for ; i < len(pieces); i++ {
		t, ok := text(pieces[i])
		if !ok {
			break
		}
		if !strings.HasPrefix(s, t) {
			return false
		}
		s = s[len(t):]
	}
	if i == len(pieces) {
		return s == ""
	}
	// Trailing text, back to the last column.
	j := len(pieces) - 1
	for ; j > i; j-- {
		t, ok := text(pieces[j])
		if !ok {
			break
		}
		if !strings.HasSuffix(s, t) {
			return false
		}
		s = s[:len(s)-len(t)]
	}
	// Between the first and the last column: each run of consecutive
	// text at its leftmost place.
	for k := i + 1; k < j; {
		if _, ok := text(pieces[k]); !ok {
			k++
			continue
		}
		e := k + 1
		for e < j {
			if _, ok := text(pieces[e]); !ok {
				break
			}
			e++
		}
		first, _ := text(pieces[k])
		for from := 0; ; {
			at := strings.Index(s[from:], first)
			if at < 0 {
				return false
			}
			rest, ok := s[from+at+len(first):], true
			for q := k + 1; q < e && ok; q++ {
				t, _ := text(pieces[q])
				if rest, ok = strings.CutPrefix(rest, t); !ok {
					break
				}
			}
			if ok {
				s = rest
				break
			}
			if from += at + 1; from > len(s) { // first is "" (an empty id)
				return false
			}
		}
		k = e
	}
	return true
}

// ComputeID returns the id a row of a model with a source-id template must
// have, from its column values (get as for Identify). This is what
// "morango id" prints and what an app inserts the row with.
func (m *Model) ComputeID(get func(column string) (value string, ok bool)) (string, error) {
	if m.SourceID == "" {
		return "", fmt.Errorf("model %s has no source-id template: the app chooses its ids", m.Name)
	}
	raw, src, err := m.raw(get)
	if err != nil {
		return "", err
	}
	return ids.Namespaced(raw, src, m.Name), nil
}

// raw renders the raw partition and the source id of a row.
func (m *Model) raw(get func(string) (string, bool)) (partition, sourceID string, err error) {
	partition, err = render(m.Partition, true, get)
	if err != nil {
		return "", "", fmt.Errorf("%s partition: %w", m.Name, err)
	}
	if m.SourceID == "" {
		return partition, "", nil
	}
	sourceID, err = render(m.SourceID, false, get)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("%s source id: %w", m.Name, err)
	case sourceID == "":
		return "", "", fmt.Errorf("%s source id: %q renders empty: a source id names the row", m.Name, m.SourceID)
	}
	return partition, sourceID, nil
}
