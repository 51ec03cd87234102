package merge_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/morango-sync/morango/merge"
)

// BenchmarkMerge measures the merge of one record, per outcome, with data
// shaped like the school app's logs (about 270 bytes of JSON, 32-character
// instance ids), under the default rule and under a column rule (which
// parses the JSON of the versions it compares):
//
//	go test ./merge -run '^$' -bench Merge
//
// An import merges every incoming record once; the store's reads and
// writes around it cost far more (see docs/performance.md).
func BenchmarkMerge(b *testing.B) {
	a, c := strings.Repeat("a", 32), strings.Repeat("c", 32)
	data := func(progress int) string {
		return fmt.Sprintf(`{"id":"00b56a68e3ccf20f58445eb15b535bea","dataset_id":"73fe2515b05bf3b7212779f1c8ee4214",`+
			`"user_id":"54f9c1756875d513c91ac44e9c2748bd","content_id":"9c1f5e2d0a4b4c8e8f3a1b2c3d4e5f60",`+
			`"start_time":"2026-10-30T20:47:46.000Z","end_time":"2026-10-30T21:02:11.000Z","progress":0.%02d}`, progress)
	}
	created := merge.Edit(nil, merge.Version{Instance: a, Counter: 1, Serialized: data(10)})
	onA := merge.Edit(&created, merge.Version{Instance: a, Counter: 2, Serialized: data(20)})
	onC := merge.Edit(&created, merge.Version{Instance: c, Counter: 1, Serialized: data(30)})
	cases := []struct {
		name            string
		local, incoming *merge.State
		want            merge.Outcome
	}{
		{"new", nil, &created, merge.New},
		{"already-have", &onA, &created, merge.AlreadyHave},
		{"fast-forward", &created, &onA, merge.FastForward},
		{"conflict", &onA, &onC, merge.Conflict},
	}
	for _, rule := range []merge.Rule{nil, merge.ColumnRule("progress", true)} {
		name := "default"
		if rule != nil {
			name = "column"
		}
		for _, tc := range cases {
			b.Run(name+"/"+tc.name, func(b *testing.B) {
				for b.Loop() {
					res, err := merge.Merge(tc.local, *tc.incoming, rule)
					if err != nil || res.Outcome != tc.want {
						b.Fatalf("%v %v, want %v", res.Outcome, err, tc.want)
					}
				}
			})
		}
	}
}

// BenchmarkSiblings measures the text a conflicting record keeps in the
// store, both ways.
func BenchmarkSiblings(b *testing.B) {
	vs := []merge.Version{
		{Instance: strings.Repeat("a", 32), Counter: 7, Serialized: `{"id":"00b56a68e3ccf20f58445eb15b535bea","progress":0.5}`},
		{Instance: strings.Repeat("c", 32), Counter: 3, Serialized: `{"id":"00b56a68e3ccf20f58445eb15b535bea","progress":0.7}`},
	}
	text := merge.EncodeSiblings(vs)
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			merge.EncodeSiblings(vs)
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := merge.DecodeSiblings(text); err != nil {
				b.Fatal(err)
			}
		}
	})
}
