package profile

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzParse feeds Parse arbitrary files: it must never panic, and a
// profile it accepts must have well-formed templates, an order that holds
// every model once, and survive a round trip through JSON.
func FuzzParse(f *testing.F) {
	if sample, err := os.ReadFile("../testdata/school/profile.json"); err == nil {
		f.Add(sample)
	}
	f.Add([]byte(doc(`{"name": "a", "table": "a", "partition": "${id}", "dependencies": ["b"]}`,
		`{"name": "b", "table": "b", "partition": "$${x}:${y}", "source_id": "${y}", "foreign_keys": {"a_id": "a"}}`)))
	f.Add([]byte(docWithScopes(goodScope)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		if len(p.Ordered()) != len(p.Models) {
			t.Fatalf("Ordered lost models")
		}
		for _, m := range p.Models {
			get := func(string) (string, bool) { return "v", true }
			if _, err := parseTemplate(m.Partition); err != nil {
				t.Fatalf("accepted a bad template: %v", err)
			}
			if m.SourceID != "" {
				id, err := m.ComputeID(get)
				if err != nil {
					t.Fatalf("ComputeID: %v", err)
				}
				if _, err := m.Identify(id, get); err != nil {
					t.Fatalf("Identify of the computed id: %v", err)
				}
			}
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(again); err != nil {
			t.Fatalf("re-encoded profile refused: %v", err)
		}
	})
}
