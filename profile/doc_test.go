package profile

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The example in docs/profile.md is the sample school's profile, and the
// messages and order it shows are the ones the package gives.
func TestDocsExample(t *testing.T) {
	text, err := os.ReadFile("../docs/profile.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(text, -1)
	if len(blocks) != 1 {
		t.Fatalf("%d json blocks in docs/profile.md, want 1", len(blocks))
	}
	documented, err := Parse(blocks[0][1])
	if err != nil {
		t.Fatal(err)
	}
	sample := loadSample(t)
	if !reflect.DeepEqual(documented, sample) {
		t.Error("the example of docs/profile.md differs from testdata/school/profile.json")
	}
	var names []string
	for _, m := range sample.Ordered() {
		names = append(names, m.Name)
	}
	if order := strings.Join(names, ", "); !strings.Contains(strings.Join(strings.Fields(string(text)), " "), order+".") {
		t.Errorf("docs/profile.md does not show the order %s", order)
	}
}

// The validation errors docs/profile.md shows are the ones Parse gives.
func TestDocsValidationMessages(t *testing.T) {
	text, err := os.ReadFile("../docs/profile.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(text)
	start, end := strings.Index(section, "**On its own**"), strings.Index(section, "**Against the app's tables**")
	if start < 0 || end < start {
		t.Fatal("docs/profile.md has no validation section")
	}
	produced := map[string]bool{}
	for _, c := range refusals {
		if _, err := Parse([]byte(c.doc)); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				produced[line] = true
			}
		}
	}
	shown := 0
	for _, line := range strings.Split(section[start:end], "\n") {
		if !strings.HasPrefix(line, "    ") {
			continue
		}
		shown++
		if msg := strings.TrimSpace(line); !produced[msg] {
			t.Errorf("docs/profile.md shows an error Parse does not give:\n%s", msg)
		}
	}
	if shown < 10 {
		t.Errorf("only %d errors shown", shown)
	}
}
