package session

import (
	"database/sql"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	_ "modernc.org/sqlite"
)

// dataSeeds are records' data in the shapes that matter to dataFields:
// ordinary objects, escapes, repeated keys (also when spelled
// differently), invalid UTF-8, nesting, trailing text, and other values.
var dataSeeds = []string{
	`{"id":"0123","dataset_id":"abc","user_id":"u1","progress":0.5,"kind":null,"done":true}`,
	` { "id" : "x" , "n" : -1.5e3 } `,
	`{}`, ` {} `, `{"a":{}}`, `{"a":[]}`, `{"a":[1,{"b":[2,"]}"]}],"c":"}"}`,
	`{"a":"x","a":"y"}`, `{"a":"x","\u0061":"y"}`, `{"\u00e9":"1","é":"2"}`,
	"{\"\xff\":1,\"\xfe\":2}", "{\"k\":\"\xff\"}", `{"k":"a\"b\\c\u0041"}`,
	`{"a":1} x`, `{"a":1}{}`, `[1,2]`, `"s"`, `12`, `null`, ``, `{`, `{"a":}`, `{"a":1,}`,
	`{"a":01}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":"` + "\x01" + `"}`,
	`{"a":` + strings.Repeat("[", 499) + strings.Repeat("]", 499) + `}`,
	`{"a":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`,
	`{"a":` + strings.Repeat(`{"b":`, 498) + `1` + strings.Repeat("}", 498) + `}`,
	`{"a":` + strings.Repeat(`{"b":`, 499) + `1` + strings.Repeat("}", 499) + `}`,
	manyKeys(64), manyKeys(65), manyKeys(300),
	`{"user_id\u0000x":"other","user_id":"mine"}`, `{"user_id":"mine","user_id\u0000":"other"}`, `{"\u0000":1}`,
	`{"a":{"k\u0000":1},"k":"v\u0000w"}`,
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `":` + `"` + strings.Repeat("v", i%3) + `"`)
	}
	b.WriteString("}")
	return b.String()
}

// checkDataFields fails if dataFields says anything other than
// decodedFields, the decoder it stands in for: the same refusal, and for an
// accepted object the same value of every key.
func checkDataFields(t *testing.T, s string) {
	t.Helper()
	get, why := dataFields(s)
	wget, wwhy := decodedFields(s)
	if why != wwhy {
		t.Fatalf("%.200q: %q, the decoder says %q", s, why, wwhy)
	}
	if why != "" {
		return
	}
	cols := []string{"", "id", "a", "k", "n", "\ufffd", "é", "kind", "done", "progress"}
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(s), &fields) == nil {
		for k := range fields {
			cols = append(cols, k)
		}
	}
	for _, c := range cols {
		v, ok := get(c)
		wv, wok := wget(c)
		if v != wv || ok != wok {
			t.Fatalf("%.200q: field %q is %q, %v; the decoder says %q, %v", s, c, v, ok, wv, wok)
		}
	}
}

func TestDataFieldsAsDecoded(t *testing.T) {
	for _, s := range dataSeeds {
		checkDataFields(t, s)
	}
	// The quick path does take ordinary records, and the shapes above
	// that it must leave to the decoder.
	if _, ok := quickFields(dataSeeds[0]); !ok {
		t.Error("an ordinary record is not read by quickFields")
	}
	for _, s := range []string{`{"a":"x","\u0061":"y"}`, "{\"\xff\":1,\"\xfe\":2}", `{"a":1} x`, manyKeys(65),
		`{"a":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`} {
		if _, ok := quickFields(s); ok {
			t.Errorf("quickFields took %.80q", s)
		}
	}
}

func FuzzDataFields(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkDataFields(t, s)
	})
}

func BenchmarkDataFields(b *testing.B) {
	s := `{"id":"4d6f7e0b0c2a4f1e9d3c2b1a0f9e8d7c","dataset_id":"a1b2c3d4e5f60718293a4b5c6d7e8f90",` +
		`"user_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","content_id":"99887766554433221100ffeeddccbbaa",` +
		`"progress":0.75,"time_spent":123.5,"completed":false,"modified":"2026-11-30T10:11:12.123456Z"}`
	for _, name := range []string{"quick", "decoded"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				var get func(string) (string, bool)
				if name == "quick" {
					get, _ = dataFields(s)
				} else {
					get, _ = decodedFields(s)
				}
				if v, ok := get("dataset_id"); !ok || v == "" {
					b.Fatal(v)
				}
			}
		})
	}
}

// TestDataFieldsAsSQLiteReads: for data dataFields accepts, every field it
// returns as a string is the text SQLite's json_extract gives the app row
// (for strings of valid UTF-8: Go and SQLite differ on invalid UTF-8 and
// lone surrogates, and on how a number is spelled, which the partition
// check does not depend on).
func TestDataFieldsAsSQLiteReads(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := []string{`id`, `user_id`, `a`, `\u0061`, `user\u005fid`, `user_id\u0000x`, `a\u0000`, `\u0000`, `k`}
	vals := []string{`"x"`, `"y\u0000z"`, `"\u00e9"`, `"q\"uote"`, `"\ud83d\ude00"`, `1`, `null`, `{"user_id":"n"}`, `["a"]`}
	r := rand.New(rand.NewPCG(1, 2))
	inputs := append([]string(nil), dataSeeds...)
	for range 10000 {
		var b strings.Builder
		b.WriteString("{")
		for i := range r.IntN(6) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"` + keys[r.IntN(len(keys))] + `":` + vals[r.IntN(len(vals))])
		}
		b.WriteString("}")
		inputs = append(inputs, b.String())
	}
	var checked int
	for _, s := range inputs {
		get, why := dataFields(s)
		if why != "" || !utf8.ValidString(s) {
			continue
		}
		for _, col := range []string{"id", "user_id", "a", "k", ""} {
			v, ok := get(col)
			if !ok || !utf8.ValidString(v) {
				continue
			}
			var typ, txt sql.NullString
			path := `$."` + col + `"`
			if err := db.QueryRow(`SELECT json_type(?1, ?2), json_extract(?1, ?2)`, s, path).Scan(&typ, &txt); err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			if typ.String == "text" && txt.String != v {
				t.Errorf("%q: field %q checked as %q; SQLite writes %q", s, col, v, txt.String)
			}
			if typ.String != "text" && typ.String != "integer" && typ.String != "real" {
				t.Errorf("%q: field %q checked as %q; SQLite reads a %s", s, col, v, typ.String)
			}
			checked++
		}
	}
	if checked < 1000 {
		t.Errorf("only %d fields compared", checked)
	}
}
