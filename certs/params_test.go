package certs

import (
	"slices"
	"testing"
)

// Params follows Python's string.Template: "$$" escapes, $name and
// ${name} are parameters, a "$" before anything else is left alone.
func TestParamsFollowStringTemplate(t *testing.T) {
	for tmpl, want := range map[string][]string{
		"$$user_id ${dataset_id}":  {"dataset_id"},
		"$$$user_id":               {"user_id"},
		"${user_id ${a}b $9 $ $":   {"a"},
		"$A_1:x ${_b}${c}":         {"A_1", "_b", "c"},
		"${dataset_id}:user-rw:$u": {"dataset_id", "u"},
	} {
		d := ScopeDefinition{ID: "s", ReadFilterTemplate: tmpl}
		if got := d.Params(); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", tmpl, got, want)
		}
		// What Params names is exactly what substitute replaces.
		ps := map[string]string{}
		for _, n := range want {
			ps[n] = "X"
		}
		all := map[string]string{"user_id": "X", "dataset_id": "X", "a": "X", "A_1": "X", "_b": "X", "c": "X", "u": "X", "b": "X"}
		if substitute(tmpl, ps) != substitute(tmpl, all) {
			t.Errorf("%q: substitute uses a parameter Params does not name", tmpl)
		}
	}
}
