package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Bounds of a record's siblings: a store row holds at most maxSiblings
// siblings in at most maxSiblingsText bytes of encoded text.
const (
	maxSiblings     = 1000
	maxSiblingsText = 16 << 20
)

// wireVersion is a sibling's encoded form; the field order is the order of
// the keys in the text.
type wireVersion struct {
	Instance    string `json:"instance"`
	Counter     int64  `json:"counter"`
	Deleted     bool   `json:"deleted"`
	HardDeleted bool   `json:"hard_deleted"`
	Serialized  string `json:"serialized"`
}

// EncodeSiblings returns the text the store keeps in a record's
// conflicting_serialized_data column: one compact JSON object per version,
// each followed by a newline, sorted by (instance, counter), with the keys
// instance, counter, deleted, hard_deleted and serialized in that order and
// no HTML escaping; "" for no siblings. The same versions always give the
// same text.
func EncodeSiblings(vs []Version) string {
	if len(vs) == 0 {
		return ""
	}
	sorted := append([]Version(nil), vs...)
	sortVersions(sorted)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, v := range sorted {
		// Encoding a struct of strings, an int and bools cannot fail.
		_ = enc.Encode(wireVersion{v.Instance, v.Counter, v.Deleted, v.HardDeleted, v.Serialized})
	}
	return b.String()
}

// DecodeSiblings parses text made by EncodeSiblings. The text is untrusted:
// it is rejected unless it is exactly the encoding of its versions (so
// encoding the result gives back the same text), the versions are sorted
// and distinct, each is valid (non-empty instance, positive counter,
// hard-deleted ones with "{}"), and the text is within the bounds a store
// row allows.
func DecodeSiblings(text string) ([]Version, error) {
	if text == "" {
		return nil, nil
	}
	if len(text) > maxSiblingsText {
		return nil, fmt.Errorf("decode siblings: %d bytes, more than %d", len(text), maxSiblingsText)
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("decode siblings: text does not end with a newline")
	}
	n := strings.Count(text, "\n")
	if n > maxSiblings {
		return nil, fmt.Errorf("decode siblings: %d lines, more than %d", n, maxSiblings)
	}
	vs := make([]Version, 0, n)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for i := 0; i < n; i++ {
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		var w wireVersion
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			return nil, fmt.Errorf("decode siblings: line %d: %w", i+1, err)
		}
		b.Reset()
		_ = enc.Encode(w)
		if b.Len() != len(line)+1 || b.String()[:len(line)] != line {
			return nil, fmt.Errorf("decode siblings: line %d is not in canonical form", i+1)
		}
		v := Version{Instance: w.Instance, Counter: w.Counter, Serialized: w.Serialized, Deleted: w.Deleted, HardDeleted: w.HardDeleted}
		if err := checkVersion(v); err != nil {
			return nil, fmt.Errorf("decode siblings: line %d: %w", i+1, err)
		}
		if i > 0 && !dotLess(vs[i-1], v) {
			return nil, fmt.Errorf("decode siblings: line %d: versions not sorted or repeated", i+1)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// sortVersions sorts versions by (Instance, Counter).
func sortVersions(vs []Version) {
	sort.Slice(vs, func(i, j int) bool { return dotLess(vs[i], vs[j]) })
}
