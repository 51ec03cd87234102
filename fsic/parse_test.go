package fsic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestMarshal(t *testing.T) {
	for _, tc := range []struct {
		v    V2
		want string
	}{
		{V2{}, `{"super":{},"sub":{}}`},
		{V2{Sub: Partitions{"p": nil}}, `{"super":{},"sub":{"p":{}}}`},
		{V2{Super: Partitions{"b": {"y": 1, "x": 2}, "a": {}}, Sub: Partitions{"b<&>": {"z": 3}}},
			`{"super":{"a":{},"b":{"x":2,"y":1}},"sub":{"b\u003c\u0026\u003e":{"z":3}}}`},
	} {
		got, err := json.Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("json.Marshal(%v) = %s, %v; want %s", tc.v, got, err, tc.want)
		}
	}
	// An encoder that does not escape HTML gets the characters as they are,
	// as it would without the method; pointers and nested values use it.
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	v := V2{Sub: Partitions{"<p>": {"i": 1}}}
	if err := e.Encode(struct{ F *V2 }{&v}); err != nil {
		t.Fatal(err)
	}
	if want := `{"F":{"super":{},"sub":{"<p>":{"i":1}}}}` + "\n"; b.String() != want {
		t.Errorf("encoder: %s, want %s", b.String(), want)
	}
}

func TestParse(t *testing.T) {
	good := []struct {
		in   string
		want V2
	}{
		{`{"super":{},"sub":{}}`, V2{Super: Partitions{}, Sub: Partitions{}}},
		// The original's json.dumps spacing, members in either order.
		{` {"sub": {"p": {"i": 2}}, "super": {"": {"i": 1}}}` + "\n",
			V2{Super: Partitions{"": {"i": 1}}, Sub: Partitions{"p": {"i": 2}}}},
		{`{"super":{"\u0070":{}},"sub":{}}`, V2{Super: Partitions{"p": {}}, Sub: Partitions{}}},
		{`{"super":{},"sub":{"p":{"i":9223372036854775807,"j":-3,"k":0}}}`,
			V2{Super: Partitions{}, Sub: Partitions{"p": {"i": 9223372036854775807, "j": -3, "k": 0}}}},
	}
	for _, tc := range good {
		got, err := Parse([]byte(tc.in))
		if err != nil {
			t.Errorf("Parse(%s): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}

	many := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"super":{},"sub":{"p":{`)
		for k := range n {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%032x":1`, k)
		}
		b.WriteString(`}}}`)
		return b.String()
	}
	if _, err := Parse([]byte(many(MaxEntries - 1))); err != nil {
		t.Errorf("MaxEntries-1 counters: %v", err)
	}
	bad := []struct {
		name, in string
		want     error
	}{
		{"empty", ``, ErrSyntax},
		{"not an object", `[]`, ErrSyntax},
		{"null", `null`, ErrSyntax},
		{"missing sub", `{"super":{}}`, ErrSyntax},
		{"null half", `{"super":null,"sub":{}}`, ErrSyntax},
		{"null counters", `{"super":{},"sub":{"p":null}}`, ErrSyntax},
		{"unknown member", `{"super":{},"sub":{},"v":2}`, ErrSyntax},
		{"repeated member", `{"super":{},"sub":{},"sub":{}}`, ErrSyntax},
		{"repeated partition", `{"super":{},"sub":{"p":{},"p":{}}}`, ErrSyntax},
		{"repeated partition, escaped", `{"super":{},"sub":{"p":{},"\u0070":{}}}`, ErrSyntax},
		{"repeated instance", `{"super":{},"sub":{"p":{"i":1,"i":2}}}`, ErrSyntax},
		{"fraction", `{"super":{},"sub":{"p":{"i":1.0}}}`, ErrSyntax},
		{"exponent", `{"super":{},"sub":{"p":{"i":1e3}}}`, ErrSyntax},
		{"string counter", `{"super":{},"sub":{"p":{"i":"1"}}}`, ErrSyntax},
		{"overflow", `{"super":{},"sub":{"p":{"i":9223372036854775808}}}`, ErrSyntax},
		{"array counters", `{"super":{},"sub":{"p":[1]}}`, ErrSyntax},
		{"trailing data", `{"super":{},"sub":{}} {}`, ErrSyntax},
		{"trailing garbage", `{"super":{},"sub":{}}x`, ErrSyntax},
		{"unterminated", `{"super":{},"sub":{"p":{"i":1}`, ErrSyntax},
		{"missing comma", `{"super":{} "sub":{}}`, ErrSyntax},
		{"invalid UTF-8", "{\"super\":{},\"sub\":{\"\xff\":{}}}", ErrSyntax},
		{"too many entries", many(MaxEntries), ErrTooLarge},
		{"too large", `{"super":{},"sub":{}}` + strings.Repeat(" ", MaxSize), ErrTooLarge},
	}
	for _, tc := range bad {
		v, err := Parse([]byte(tc.in))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if err != nil && (v.Super != nil || v.Sub != nil) {
			t.Errorf("%s: value with an error", tc.name)
		}
	}
}

func TestValidate(t *testing.T) {
	id := func(c string) string { return strings.Repeat(c, 32) }
	filter := []string{"D:u", "D:v:1"}
	ok := V2{
		Super: Partitions{"": {id("a"): 1}, "D:v": {id("b"): 2}, "D:": {}},
		Sub:   Partitions{"D:u": {id("a"): 3}, "D:u:x": {id("c"): 4}, "D:v:1": {}},
	}
	if err := Validate(ok, filter); err != nil {
		t.Errorf("valid: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(v *V2)
		want error
		half string
	}{
		{"sub outside the filter", func(v *V2) { v.Sub["D:w"] = Counters{} }, ErrInvalidPartition, "sub"},
		{"sub above the filter", func(v *V2) { v.Sub["D"] = Counters{} }, ErrInvalidPartition, "sub"},
		{"super equal to a filter prefix", func(v *V2) { v.Super["D:u"] = Counters{} }, ErrInvalidPartition, "super"},
		{"super unrelated", func(v *V2) { v.Super["E"] = Counters{} }, ErrInvalidPartition, "super"},
		{"zero counter", func(v *V2) { v.Sub["D:u"][id("d")] = 0 }, ErrInvalidCounter, "sub"},
		{"negative counter", func(v *V2) { v.Super[""][id("d")] = -1 }, ErrInvalidCounter, "super"},
		{"upper-case id", func(v *V2) { v.Sub["D:u"][id("A")] = 1 }, ErrInvalidInstance, "sub"},
		{"short id", func(v *V2) { v.Sub["D:u"]["abc"] = 1 }, ErrInvalidInstance, "sub"},
		{"dashed id", func(v *V2) { v.Sub["D:u"]["a0000000-0000-0000-0000-000000000000"] = 1 }, ErrInvalidInstance, "sub"},
		{"long partition", func(v *V2) { v.Sub["D:u"+strings.Repeat("x", MaxPartitionLen)] = Counters{} }, ErrTooLarge, "sub"},
		{"too many entries", func(v *V2) {
			for k := range MaxEntries {
				v.Sub["D:u"][fmt.Sprintf("%032x", k)] = 1
			}
		}, ErrTooLarge, ""},
	} {
		v := V2{Super: clone(ok.Super), Sub: clone(ok.Sub)}
		tc.edit(&v)
		err := Validate(v, filter)
		var e *Error
		if !errors.Is(err, tc.want) || !errors.As(err, &e) || e.Half != tc.half {
			t.Errorf("%s: %v (%#v), want %v in %q", tc.name, err, e, tc.want, tc.half)
		}
	}
	if err := Validate(V2{Sub: Partitions{"p": {}}}, nil); !errors.Is(err, ErrInvalidPartition) {
		t.Errorf("no filter: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"super":{},"sub":{}}`,
		`{"super": {"": {"b7f53d94e01652740f3900e7890a45bf": 3}}, "sub": {"934d0d373bb4b8854d1b0a8f6030c020": {"b7f53d94e01652740f3900e7890a45bf": 8, "3ba189cdf331a1a112ca43971d543a85": 4}}}`,
		`{"sub":{"p":{"i":-0}},"super":{"\ud800":{"<&>":1}}}`,
		`{"super":{},"sub":{"p":{"i":1,"i":2}}}`,
		`{"super":{},"sub":{"p":{"i":1e3}}}`,
		`{"super":{},"sub":{}} x`,
		`[{"super":{}}]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse of %s: %v", out, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("parse, write, parse: %v != %v", v, w)
		}
		again, _ := json.Marshal(w)
		if !bytes.Equal(out, again) {
			t.Fatalf("write not stable: %s != %s", out, again)
		}
		_ = Validate(v, []string{"p"})
	})
}
