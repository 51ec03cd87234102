package certs

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Filter is an ordered list of partition prefixes: a partition is in the
// filter if it starts with one of them. Filters made by NewFilter and
// ParseFilterString always hold at least one prefix; the empty prefix ""
// matches every partition. A Filter with no prefixes at all (nil, or an
// empty intersection) matches nothing; note that its String is "", which
// ParseFilterString reads back as the filter that matches everything.
type Filter []string

// NewFilter builds a filter as the original does: the template's $name and
// ${name} placeholders are replaced by params (Python's
// string.Template.safe_substitute: unknown names are left as they are, "$$"
// becomes "$"), and the result is split on any white space. An empty result
// is the filter [""], which matches everything.
func NewFilter(template string, params map[string]string) Filter {
	return ParseFilterString(substitute(template, params))
}

// ParseFilterString reads a filter from its String form (prefixes joined
// with "\n"); any white space separates prefixes. An empty or blank string
// is the filter [""], which matches everything.
func ParseFilterString(s string) Filter {
	f := Filter(strings.FieldsFunc(s, isPySpace))
	if len(f) == 0 {
		return Filter{""}
	}
	return f
}

// Contains reports whether partition starts with one of the filter's
// prefixes.
func (f Filter) Contains(partition string) bool {
	for _, p := range f {
		if strings.HasPrefix(partition, p) {
			return true
		}
	}
	return false
}

// IsSubsetOf reports whether every prefix of f lies under a prefix of other,
// so that every partition f contains, other contains too.
func (f Filter) IsSubsetOf(other Filter) bool {
	for _, p := range f {
		if !other.Contains(p) {
			return false
		}
	}
	return true
}

// Equal reports whether f and other hold the same set of prefixes (order
// and repetition aside), as the original's filter equality does.
func (f Filter) Equal(other Filter) bool {
	a, b := slices.Clone(f), slices.Clone(other)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// String returns the prefixes joined with "\n", the original's normalised
// form (what a transfer session stores).
func (f Filter) String() string {
	return strings.Join(f, "\n")
}

// Intersect returns the filter of the partitions both f and other contain:
// the prefixes of each that lie under a prefix of the other. The result
// holds each prefix once and none that lies under another of its prefixes;
// its order is f's prefixes first, then other's, each in their own order.
// It is empty (matches nothing) when the two filters share no partition.
func (f Filter) Intersect(other Filter) Filter {
	var cand []string
	for _, a := range f {
		if other.Contains(a) {
			cand = append(cand, a)
		}
	}
	for _, b := range other {
		if f.Contains(b) {
			cand = append(cand, b)
		}
	}
	var out Filter
	for i, p := range cand {
		covered := false
		for j, q := range cand {
			if j != i && strings.HasPrefix(p, q) && (len(q) < len(p) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}

// isPySpace reports whether Python's str.split() splits at r: Unicode white
// space plus the separators U+001C to U+001F.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}

// substitute follows Python's string.Template.safe_substitute with the
// default delimiter "$" and identifiers [_a-zA-Z][_a-zA-Z0-9]*.
func substitute(t string, params map[string]string) string {
	return expand(t, func(name string) (string, bool) {
		v, ok := params[name]
		return v, ok
	})
}

// expand is substitute with the parameters' values from lookup; a name it
// has no value for stays as written.
func expand(t string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(t, "$") {
		return t
	}
	var b strings.Builder
	for i := 0; i < len(t); {
		if t[i] != '$' {
			b.WriteByte(t[i])
			i++
			continue
		}
		rest := t[i+1:]
		switch {
		case strings.HasPrefix(rest, "$"):
			b.WriteByte('$')
			i += 2
		case identLen(rest) > 0:
			n := identLen(rest)
			if v, ok := lookup(rest[:n]); ok {
				b.WriteString(v)
			} else {
				b.WriteString(t[i : i+1+n])
			}
			i += 1 + n
		case strings.HasPrefix(rest, "{") && identLen(rest[1:]) > 0 &&
			strings.HasPrefix(rest[1+identLen(rest[1:]):], "}"):
			n := identLen(rest[1:])
			if v, ok := lookup(rest[1 : 1+n]); ok {
				b.WriteString(v)
			} else {
				b.WriteString(t[i : i+3+n])
			}
			i += 3 + n
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String()
}

// Params returns the names of the parameters the definition's filter
// templates use, sorted.
func (d ScopeDefinition) Params() []string {
	var names []string
	for _, t := range []string{d.ReadWriteFilterTemplate, d.ReadFilterTemplate, d.WriteFilterTemplate} {
		expand(t, func(name string) (string, bool) {
			names = append(names, name)
			return "", false
		})
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// CheckParams says what is wrong with params for the definition: a
// parameter its filters use that is missing or empty (the filter would
// keep the literal "${name}" and match nothing the app writes), and, with
// strict, one they do not use (a misspelt name).
func (d ScopeDefinition) CheckParams(params map[string]string, strict bool) error {
	want := d.Params()
	var missing, unknown []string
	for _, n := range want {
		if params[n] == "" {
			missing = append(missing, n)
		}
	}
	if strict {
		for n := range params {
			if !slices.Contains(want, n) {
				unknown = append(unknown, n)
			}
		}
		slices.Sort(unknown)
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "it needs "+strings.Join(missing, ", "))
	}
	if len(unknown) > 0 {
		problems = append(problems, "it does not use "+strings.Join(unknown, ", "))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("scope %s takes the parameters %s: %s", d.ID, strings.Join(want, ", "), strings.Join(problems, "; "))
}

// identLen returns the length of the identifier at the start of s, or 0.
func identLen(s string) int {
	n := 0
	for n < len(s) {
		c := s[n]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (n == 0 || c < '0' || c > '9') {
			break
		}
		n++
	}
	return n
}

// Scope is what a certificate allows: the partitions its holder may read and
// those it may write.
type Scope struct {
	Read  Filter `json:"read"`
	Write Filter `json:"write"`
}

// NewScope returns the scope a definition gives with the given parameters,
// as the original builds it: the read filter is the read-write template
// followed by the read template, the write filter the read-write template
// followed by the write template (templates joined with a line break, then
// substituted and split), so two empty templates give [""].
func NewScope(def ScopeDefinition, params map[string]string) Scope {
	return Scope{
		Read:  NewFilter(def.ReadWriteFilterTemplate+"\n"+def.ReadFilterTemplate, params),
		Write: NewFilter(def.ReadWriteFilterTemplate+"\n"+def.WriteFilterTemplate, params),
	}
}

// IsSubsetOf reports whether s allows nothing other does not: its read
// filter is a subset of other's read filter and its write filter of other's
// write filter.
func (s Scope) IsSubsetOf(other Scope) bool {
	return s.Read.IsSubsetOf(other.Read) && s.Write.IsSubsetOf(other.Write)
}

// Describe returns the definition's description with the parameters
// substituted.
func (d ScopeDefinition) Describe(params map[string]string) string {
	return substitute(d.Description, params)
}
