package profile

import (
	"fmt"
	"regexp"
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
// "" and the id must be 32 lower-case hex digits. The partition is the raw
// partition with ${id} replaced by the id.
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
	return Identity{ID: id, Partition: ids.FinalPartition(raw, id), SourceID: src}, nil
}

// PartitionOf renders the partition a row's column values give (get as
// for Identify), without checking its id: what a receiver compares with
// the scope of the certificate that signed the row's record.
func (m *Model) PartitionOf(id string, get func(column string) (value string, ok bool)) (string, error) {
	raw, err := render(m.Partition, true, get)
	if err != nil {
		return "", fmt.Errorf("%s partition: %w", m.Name, err)
	}
	return ids.FinalPartition(raw, id), nil
}

// PartitionSeparator separates the parts of a partition. A value that a
// partition template takes from a row may not contain it: filters match
// partitions by prefix, so a value "a:user-rw:b" would let a row render a
// partition under another's prefix while its columns say otherwise.
const PartitionSeparator = ":"

// PartitionColumns returns the columns the partition template takes values
// from (${id} aside), in order of first use.
func (m *Model) PartitionColumns() []string {
	var cols []string
	for _, c := range refs(m.Partition) {
		if c != "id" {
			cols = append(cols, c)
		}
	}
	return cols
}

// FitsPartition reports whether partition is one the model's template
// renders for the row id: the template's literal text where it has text,
// id where it has ${id}, and for each other column a value without the
// PartitionSeparator.
func (m *Model) FitsPartition(id, partition string) bool {
	re, err := partitionPattern(m.Partition)
	if err != nil {
		return false
	}
	sub := re.FindStringSubmatch(partition)
	if sub == nil {
		return false
	}
	for _, v := range sub[1:] { // the groups are the ${id} references
		if v != id {
			return false
		}
	}
	return true
}

// patterns caches partitionPattern's expressions by template.
var patterns sync.Map

// partitionPattern returns the expression that matches the partitions the
// template t renders.
func partitionPattern(t string) (*regexp.Regexp, error) {
	if re, ok := patterns.Load(t); ok {
		return re.(*regexp.Regexp), nil
	}
	parts, err := parseTemplate(t)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("^")
	for _, p := range parts {
		switch p.ref {
		case "":
			b.WriteString(regexp.QuoteMeta(p.literal))
		case "id":
			b.WriteString("([^" + PartitionSeparator + "]*)")
		default:
			b.WriteString("[^" + PartitionSeparator + "]*")
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, err
	}
	patterns.Store(t, re)
	return re, nil
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
