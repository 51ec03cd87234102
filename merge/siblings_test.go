package merge

import (
	"strings"
	"testing"
)

func TestSiblingsRoundTrip(t *testing.T) {
	vs := []Version{
		ver("a", 1, "<Zoë> & \"q\" \\ \n\t\u2028\x01"),
		deleted("a", 12, `{"name":"x"}`),
		hard("b", 3),
		ver("😀", 9223372036854775807, ""),
	}
	text := EncodeSiblings(vs)
	want := `{"instance":"a","counter":1,"deleted":false,"hard_deleted":false,"serialized":"<Zoë> & \"q\" \\ \n\t\u2028\u0001"}
{"instance":"a","counter":12,"deleted":true,"hard_deleted":false,"serialized":"{\"name\":\"x\"}"}
{"instance":"b","counter":3,"deleted":true,"hard_deleted":true,"serialized":"{}"}
{"instance":"😀","counter":9223372036854775807,"deleted":false,"hard_deleted":false,"serialized":""}
`
	if text != want {
		t.Fatalf("encoding\n got %s\nwant %s", text, want)
	}
	got, err := DecodeSiblings(text)
	if err != nil {
		t.Fatal(err)
	}
	if !slicesEqual(got, vs) {
		t.Fatalf("decoded %v, want %v", got, vs)
	}
	// Encoding sorts; the input is not changed.
	rev := []Version{vs[3], vs[2], vs[1], vs[0]}
	if EncodeSiblings(rev) != text || rev[0] != vs[3] {
		t.Error("encoding depends on input order or sorts the input")
	}
	if EncodeSiblings(nil) != "" {
		t.Error("no siblings must encode as empty text")
	}
	if got, err := DecodeSiblings(""); err != nil || got != nil {
		t.Errorf("DecodeSiblings(\"\") = %v, %v", got, err)
	}
}

func TestDecodeSiblingsRejects(t *testing.T) {
	line := func(inst string, c, body string) string {
		return `{"instance":"` + inst + `","counter":` + c + `,"deleted":false,"hard_deleted":false,"serialized":"` + body + `"}` + "\n"
	}
	ok := line("a", "1", "x")
	if _, err := DecodeSiblings(ok); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"no final newline":    strings.TrimSuffix(ok, "\n"),
		"empty line":          "\n",
		"trailing line":       ok + "\n",
		"trailing data":       ok + "x",
		"two objects a line":  strings.TrimSuffix(ok, "\n") + " " + ok,
		"space after colon":   strings.Replace(ok, `"counter":1`, `"counter": 1`, 1),
		"key order":           `{"counter":1,"instance":"a","deleted":false,"hard_deleted":false,"serialized":"x"}` + "\n",
		"missing field":       `{"instance":"a","counter":1,"deleted":false,"serialized":"x"}` + "\n",
		"unknown field":       strings.Replace(ok, `{"instance"`, `{"extra":1,"instance"`, 1),
		"duplicate key":       strings.Replace(ok, `"serialized":"x"`, `"serialized":"x","serialized":"x"`, 1),
		"escaped letter":      line("a", "1", `\u0078`),
		"html escaped":        line("a", "1", `\u003c`),
		"invalid UTF-8":       line("a", "1", "\xff"),
		"null string":         strings.Replace(ok, `"serialized":"x"`, `"serialized":null`, 1),
		"float counter":       line("a", "1.0", "x"),
		"zero counter":        line("a", "0", "x"),
		"negative counter":    line("a", "-1", "x"),
		"counter overflow":    line("a", "9223372036854775808", "x"),
		"empty instance":      line("", "1", "x"),
		"unsorted":            line("b", "1", "x") + line("a", "1", "x"),
		"unsorted counters":   line("a", "2", "x") + line("a", "1", "x"),
		"duplicate":           ok + ok,
		"same dot":            ok + line("a", "1", "y"),
		"hard delete data":    `{"instance":"a","counter":1,"deleted":true,"hard_deleted":true,"serialized":"x"}` + "\n",
		"not an object":       `[]` + "\n",
		"CRLF":                strings.TrimSuffix(ok, "\n") + "\r\n",
		"original's stack":    `{"id": "x"}` + "\n" + `{"id": "y"}` + "\n",
		"too long":            strings.Repeat(" ", maxSiblingsText) + "\n",
		"too many":            strings.Repeat("\n", maxSiblings+1),
		"leading whitespace":  " " + ok,
		"uppercase bool":      strings.Replace(ok, "false", "False", 1),
		"serialized a number": strings.Replace(ok, `"serialized":"x"`, `"serialized":1`, 1),
	}
	for name, text := range bad {
		if vs, err := DecodeSiblings(text); err == nil {
			t.Errorf("%s: accepted %q as %v", name, text, vs)
		}
	}
}

func FuzzDecodeSiblings(f *testing.F) {
	f.Add("")
	f.Add(EncodeSiblings([]Version{ver("a", 1, `{"x":"<&>"}`), deleted("b", 2, "y"), hard("c", 3)}))
	f.Add(EncodeSiblings([]Version{ver("é", 1, "\u2028\x00\t")}))
	f.Add(`{"instance":"a","counter":1,"deleted":false,"hard_deleted":false,"serialized":"\u0078"}` + "\n")
	f.Add(`{"instance":"b","counter":1,"deleted":false,"hard_deleted":false,"serialized":""}` + "\n" +
		`{"instance":"a","counter":1,"deleted":false,"hard_deleted":false,"serialized":""}` + "\n")
	f.Add("{}\n")
	f.Add("\n\n")
	f.Fuzz(func(t *testing.T, text string) {
		vs, err := DecodeSiblings(text)
		if err != nil {
			return
		}
		if again := EncodeSiblings(vs); again != text {
			t.Fatalf("re-encoding %q gives %q", text, again)
		}
		for i, v := range vs {
			if err := checkVersion(v); err != nil {
				t.Fatalf("accepted invalid version: %v", err)
			}
			if i > 0 && !dotLess(vs[i-1], v) {
				t.Fatalf("accepted unsorted versions")
			}
		}
		// A state with these siblings under a new head merges.
		if len(vs) > 0 {
			h := map[string]int64{"~": 1}
			for _, v := range vs {
				h[v.Instance] = max(h[v.Instance], v.Counter)
			}
			st := State{Head: ver("~", 1, "head"), Siblings: vs, History: h}
			if _, err := Merge(nil, st, nil); err != nil {
				t.Fatalf("decoded siblings do not make a valid state: %v", err)
			}
		}
	})
}
