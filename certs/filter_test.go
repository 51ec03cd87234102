package certs

import (
	"slices"
	"testing"
)

type filtersFixture struct {
	Parsing []struct {
		Template     string            `json:"template"`
		Params       map[string]string `json:"params"`
		FilterString string            `json:"filter_string"`
		Partitions   []string          `json:"partitions"`
		Len          int               `json:"len"`
	} `json:"filter_parsing"`
	Relations []struct {
		A        string `json:"a"`
		B        string `json:"b"`
		IsSubset bool   `json:"a.is_subset_of(b)"`
		Equal    bool   `json:"a == b"`
	} `json:"filter_relations"`
	Contains []struct {
		Filter    string `json:"filter"`
		Partition string `json:"partition"`
		Contains  bool   `json:"contains_partition"`
	} `json:"contains_partition"`
	Scopes []struct {
		Definition  string            `json:"scope_definition"`
		Params      map[string]string `json:"params"`
		Read        []string          `json:"read_filter"`
		Write       []string          `json:"write_filter"`
		Description string            `json:"description"`
	} `json:"scopes"`
}

func TestFiltersFixture(t *testing.T) {
	var fx filtersFixture
	readFixture(t, "filters_scopes.json", &fx)
	for _, c := range fx.Parsing {
		f := NewFilter(c.Template, c.Params)
		if f.String() != c.FilterString || !slices.Equal(f, Filter(c.Partitions)) || len(f) != c.Len {
			t.Errorf("NewFilter(%q, %v) = %q (%q), want %q (%q)", c.Template, c.Params, []string(f), f.String(), c.Partitions, c.FilterString)
		}
		if g := ParseFilterString(f.String()); !slices.Equal(g, f) {
			t.Errorf("ParseFilterString(%q) = %q, want %q", f.String(), []string(g), []string(f))
		}
	}
	for _, c := range fx.Relations {
		a, b := NewFilter(c.A, nil), NewFilter(c.B, nil)
		if got := a.IsSubsetOf(b); got != c.IsSubset {
			t.Errorf("%q.IsSubsetOf(%q) = %v, want %v", c.A, c.B, got, c.IsSubset)
		}
		if got := a.Equal(b); got != c.Equal {
			t.Errorf("%q.Equal(%q) = %v, want %v", c.A, c.B, got, c.Equal)
		}
	}
	for _, c := range fx.Contains {
		if got := NewFilter(c.Filter, nil).Contains(c.Partition); got != c.Contains {
			t.Errorf("%q.Contains(%q) = %v, want %v", c.Filter, c.Partition, got, c.Contains)
		}
	}
	f, _ := loadCertificates(t)
	for _, c := range fx.Scopes {
		def := f.def(t, c.Definition)
		s := NewScope(def, c.Params)
		if !slices.Equal(s.Read, Filter(c.Read)) || !slices.Equal(s.Write, Filter(c.Write)) {
			t.Errorf("NewScope(%s, %v) = %q / %q, want %q / %q", c.Definition, c.Params, []string(s.Read), []string(s.Write), c.Read, c.Write)
		}
		if got := def.Describe(c.Params); got != c.Description {
			t.Errorf("Describe(%s, %v) = %q, want %q", c.Definition, c.Params, got, c.Description)
		}
	}
}

// The expected values were computed with Python 3.11's
// string.Template(template).safe_substitute(params).
func TestSubstitute(t *testing.T) {
	params := map[string]string{"a": "A", "ab": "AB", "_x": "X", "A": "upper"}
	cases := []struct{ in, want string }{
		{"$a", "A"},
		{"$ab", "AB"},
		{"$abc", "$abc"},
		{"${a}b", "Ab"},
		{"${a", "${a"},
		{"$1", "$1"},
		{"$", "$"},
		{"$$", "$"},
		{"$$a", "$a"},
		{"${}", "${}"},
		{"${a-b}", "${a-b}"},
		{"$A", "upper"},
		{"$_x", "X"},
		{"x$", "x$"},
		{"${ab}${a}$a$", "ABAA$"},
		{"$a$b", "A$b"},
		{"${b}", "${b}"},
		{"$-", "$-"},
		{"€$a", "€A"},
		{"${a}}", "A}"},
		{"${_x}", "X"},
	}
	for _, c := range cases {
		if got := substitute(c.in, params); got != c.want {
			t.Errorf("substitute(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestFilterSplitsLikePython(t *testing.T) {
	// Python 3.11: "a\x1cb\x1dc\x1ed\x1ff\x85g\xa0h\u3000i\u200bj\u180ek".split()
	got := ParseFilterString("a\x1cb\x1dc\x1ed\x1ff\u0085g\u00a0h\u3000i\u200bj\u180ek")
	want := Filter{"a", "b", "c", "d", "f", "g", "h", "i\u200bj\u180ek"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", []string(got), []string(want))
	}
	if got := ParseFilterString(" \n\t "); !slices.Equal(got, Filter{""}) {
		t.Errorf("blank: got %q", []string(got))
	}
}

func TestFilterEqualIgnoresOrderAndRepeats(t *testing.T) {
	if !(Filter{"a", "b", "a"}).Equal(Filter{"b", "a"}) {
		t.Error("same set not equal")
	}
	if (Filter{"a"}).Equal(Filter{"a", "b"}) {
		t.Error("different sets equal")
	}
}

func TestFilterIntersect(t *testing.T) {
	cases := []struct {
		a, b, want Filter
	}{
		{Filter{"D"}, Filter{"D:user-rw:U", "D:anonymous"}, Filter{"D:user-rw:U", "D:anonymous"}},
		{Filter{"D:user-rw:U", "D:anonymous"}, Filter{"D"}, Filter{"D:user-rw:U", "D:anonymous"}},
		{Filter{"D:a", "E"}, Filter{"D", "E:x"}, Filter{"D:a", "E:x"}},
		{Filter{"D"}, Filter{"E"}, nil},
		{Filter{""}, Filter{"D", "E"}, Filter{"D", "E"}},
		{Filter{"D", "E"}, Filter{""}, Filter{"D", "E"}},
		{Filter{"D"}, Filter{"D"}, Filter{"D"}},
		{Filter{"D", "D:x"}, Filter{"D"}, Filter{"D"}},
		{Filter{"D:x", "D:x"}, Filter{"D:x:y", "D"}, Filter{"D:x"}},
		{Filter{"Dx"}, Filter{"D:"}, nil},
		{nil, Filter{""}, nil},
		{Filter{"D"}, nil, nil},
	}
	for _, c := range cases {
		got := c.a.Intersect(c.b)
		if !slices.Equal(got, c.want) {
			t.Errorf("%q ∩ %q = %q, want %q", []string(c.a), []string(c.b), []string(got), []string(c.want))
		}
		// The result lies within both and does not depend on the order
		// of the operands as a set.
		if !got.IsSubsetOf(c.a) || !got.IsSubsetOf(c.b) {
			t.Errorf("%q ∩ %q = %q is not within both", []string(c.a), []string(c.b), []string(got))
		}
		if back := c.b.Intersect(c.a); !back.Equal(got) {
			t.Errorf("%q ∩ %q = %q but the other way round %q", []string(c.a), []string(c.b), []string(got), []string(back))
		}
	}
	// A partition is in the intersection exactly when both contain it.
	a, b := Filter{"D:a", "E", "F:x"}, Filter{"D", "E:y", "G"}
	in := a.Intersect(b)
	for _, p := range []string{"D", "D:a", "D:ab", "E", "E:y", "E:yz", "E:z", "F:x", "G", ""} {
		if got, want := in.Contains(p), a.Contains(p) && b.Contains(p); got != want {
			t.Errorf("intersection contains %q: %v, want %v", p, got, want)
		}
	}
}

func TestScopeSubset(t *testing.T) {
	f, _ := loadCertificates(t)
	full, single := f.def(t, "full-facility"), f.def(t, "single-user")
	d := NewScope(full, map[string]string{"dataset_id": "D"})
	u := NewScope(single, map[string]string{"dataset_id": "D", "user_id": "U"})
	other := NewScope(single, map[string]string{"dataset_id": "E", "user_id": "U"})
	if !u.IsSubsetOf(d) || d.IsSubsetOf(u) || other.IsSubsetOf(d) || !d.IsSubsetOf(d) {
		t.Error("scope subset relations are wrong")
	}
	// Read within, write not: not a subset.
	if (Scope{Read: Filter{"D:x"}, Write: Filter{"E"}}).IsSubsetOf(d) {
		t.Error("a scope writing outside the parent is a subset")
	}
}
