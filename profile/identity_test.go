package profile

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// row returns a get function over a row's values.
func row(values map[string]string) func(string) (string, bool) {
	return func(c string) (string, bool) {
		v, ok := values[c]
		return v, ok
	}
}

type uuidVectors struct {
	Namespaced struct {
		Examples []struct {
			Partition string `json:"partition"`
			SourceID  string `json:"source_id"`
			ModelName string `json:"model_name"`
			Want      string `json:"compute_namespaced_id"`
		} `json:"examples"`
	} `json:"compute_namespaced_id"`
	Models struct {
		Examples []struct {
			ModelName    string  `json:"model_name"`
			RawPartition string  `json:"calculate_partition()"`
			Calculated   *string `json:"calculate_source_id()"`
			SourceID     string  `json:"_morango_source_id"`
			ID           string  `json:"id"`
			Partition    string  `json:"_morango_partition"`
		} `json:"examples"`
	} `json:"syncable_model_calculate_uuid"`
}

func loadUUIDVectors(t *testing.T) uuidVectors {
	t.Helper()
	data, err := os.ReadFile("../testdata/morango/uuids.json")
	if err != nil {
		t.Fatal(err)
	}
	var v uuidVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Models.Examples) == 0 || len(v.Namespaced.Examples) == 0 {
		t.Fatal("no vectors")
	}
	return v
}

// The original's records, described by templates over their columns, get
// the original's ids and partitions.
func TestIdentifyOriginalRecords(t *testing.T) {
	const ds = "1e2edbeb2ffea72cd7eb943a956a992c"
	// The benchmark app's models as a profile would declare them, with the
	// column values that give each vector's partition and source id.
	models := map[string]struct {
		model *Model
		row   map[string]string
	}{
		"facility": {
			&Model{Name: "facility", Partition: "${dataset_id}:allusers-ro", SourceID: "${name}"},
			map[string]string{"dataset_id": ds, "name": "Fixture Facility"},
		},
		"user": {
			&Model{Name: "user", Partition: "${dataset_id}:user-ro:${id}", SourceID: "${facility_id}:${username}"},
			map[string]string{"dataset_id": ds, "facility_id": "189b7588205300d11a84244e191e18a6", "username": "alice"},
		},
		"contentsummarylog": {
			&Model{Name: "contentsummarylog", Partition: "${dataset_id}:user-rw:${user_id}", SourceID: "${user_id}:${content_id}"},
			map[string]string{"dataset_id": ds, "user_id": "62af002a58548dbc3613504793660dac", "content_id": "cccccccccccccccccccccccccccccccc"},
		},
		// A random source id, kept in a column of its own.
		"contentinteractionlog": {
			&Model{Name: "contentinteractionlog", Partition: "${dataset_id}:user-rw:${user_id}", SourceID: "${source}"},
			map[string]string{"dataset_id": ds, "user_id": "62af002a58548dbc3613504793660dac", "source": "eaca926a95784842b9f3557151083a34"},
		},
	}
	for _, ex := range loadUUIDVectors(t).Models.Examples {
		c, ok := models[ex.ModelName]
		if !ok {
			t.Errorf("no model for vector %s", ex.ModelName)
			continue
		}
		id, err := c.model.ComputeID(row(c.row))
		if err != nil || id != ex.ID {
			t.Errorf("%s: ComputeID = %s, %v; want %s", ex.ModelName, id, err, ex.ID)
		}
		got, err := c.model.Identify(ex.ID, row(c.row))
		want := Identity{ID: ex.ID, Partition: ex.Partition, SourceID: ex.SourceID}
		if err != nil || got != want {
			t.Errorf("%s: Identify = %+v, %v; want %+v", ex.ModelName, got, err, want)
		}
		raw, _, err := c.model.raw(row(c.row))
		if err != nil || raw != ex.RawPartition {
			t.Errorf("%s: raw partition %q, want %q", ex.ModelName, raw, ex.RawPartition)
		}
	}
}

func TestComputeIDNamespacedVectors(t *testing.T) {
	for _, ex := range loadUUIDVectors(t).Namespaced.Examples {
		// The vector's partition as a template: its literal text, with
		// ${id} kept as the placeholder and any other $ escaped.
		tmpl := strings.ReplaceAll(strings.ReplaceAll(ex.Partition, "$", "$$"), "$${id}", "${id}")
		m := &Model{Name: ex.ModelName, Partition: tmpl, SourceID: "${src}"}
		id, err := m.ComputeID(row(map[string]string{"src": ex.SourceID}))
		if err != nil || id != ex.Want {
			t.Errorf("%q %q %q: ComputeID = %s, %v; want %s", ex.Partition, ex.SourceID, ex.ModelName, id, err, ex.Want)
		}
		if _, err := m.Identify(ex.Want, row(map[string]string{"src": ex.SourceID})); err != nil {
			t.Errorf("Identify: %v", err)
		}
	}
}

func TestIdentifyRefuses(t *testing.T) {
	summary := &Model{Name: "contentsummarylog", Partition: "${dataset_id}:user-rw:${user_id}", SourceID: "${user_id}:${content_id}"}
	vals := map[string]string{"dataset_id": "D", "user_id": "U", "content_id": "C"}
	want := ids.Namespaced("D:user-rw:U", "U:C", "contentsummarylog")

	wrong := ids.Random()
	_, err := summary.Identify(wrong, row(vals))
	var mismatch *IDMismatchError
	if !errors.As(err, &mismatch) || mismatch.Model != "contentsummarylog" || mismatch.Got != wrong || mismatch.Want != want {
		t.Fatalf("Identify with a random id: %v", err)
	}
	if !strings.Contains(err.Error(), `"morango id"`) {
		t.Errorf("the error does not say what to do: %v", err)
	}

	delete(vals, "content_id")
	if _, err := summary.Identify(want, row(vals)); err == nil || !strings.Contains(err.Error(), "column content_id is missing or NULL") {
		t.Errorf("missing source-id column: %v", err)
	}
	if _, err := summary.ComputeID(row(vals)); err == nil || !strings.Contains(err.Error(), "content_id") {
		t.Errorf("ComputeID with a missing column: %v", err)
	}
	delete(vals, "dataset_id")
	if _, err := summary.Identify(want, row(vals)); err == nil || !strings.Contains(err.Error(), "contentsummarylog partition: column dataset_id is missing or NULL") {
		t.Errorf("missing partition column: %v", err)
	}

	empty := &Model{Name: "facility", Partition: "", SourceID: "${name}"}
	if _, err := empty.ComputeID(row(map[string]string{"name": ""})); err == nil || !strings.Contains(err.Error(), "renders empty") {
		t.Errorf("empty source id: %v", err)
	}

	lesson := &Model{Name: "lesson", Partition: "${dataset_id}:allusers-ro"}
	for _, bad := range []string{"", "not-an-id", strings.ToUpper(ids.Random())} {
		if _, err := lesson.Identify(bad, row(map[string]string{"dataset_id": "D"})); err == nil || !strings.Contains(err.Error(), "32 lower-case hex digits") {
			t.Errorf("Identify(%q): %v", bad, err)
		}
	}
	if _, err := lesson.ComputeID(row(nil)); err == nil || !strings.Contains(err.Error(), "the app chooses its ids") {
		t.Errorf("ComputeID without a source-id template: %v", err)
	}
}

// A model without a source-id template keeps the app's id; ${id} in its
// partition becomes that id.
func TestIdentifyAppChosenID(t *testing.T) {
	user := &Model{Name: "facilityuser", Partition: "${dataset_id}:user-ro:${id}"}
	id := "9aadab7f946d31e740e2fae32fe94c58"
	got, err := user.Identify(id, row(map[string]string{"dataset_id": "D"}))
	if want := (Identity{ID: id, Partition: "D:user-ro:" + id}); err != nil || got != want {
		t.Errorf("Identify = %+v, %v; want %+v", got, err, want)
	}
}

func TestFitsPartition(t *testing.T) {
	m := &Model{Name: "log", Partition: "${dataset_id}:user-rw:${user_id}"}
	u := &Model{Name: "user", Partition: "${dataset_id}:user-ro:${id}"}
	d := &Model{Name: "dollar", Partition: "a$$b.${x}*"}
	const id = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		m         *Model
		partition string
		want      bool
	}{
		{m, "DS:user-rw:L", true},
		{m, "DS:user-rw:", true}, // empty values render empty
		{m, "DS:user-rw:L:user-rw:X", false},
		{m, "DS:x:user-rw:L", false},
		{m, "DS:user-ro:L", false},
		{m, "DS:user-rw:L ", true},
		{u, "DS:user-ro:" + id, true},
		{u, "DS:user-ro:" + id + "0", false},
		{u, "DS:user-rw:L", false},
		{u, "DS:user-ro:L", false},
		{d, "a$b.v*", true},
		{d, "a$b.v", false},
		{d, "aXb.v*", false},
	} {
		if got := c.m.FitsPartition(id, c.partition); got != c.want {
			t.Errorf("%s %q: fits %v, want %v", c.m.Partition, c.partition, got, c.want)
		}
	}
	if got := m.PartitionColumns(); len(got) != 2 || got[0] != "dataset_id" || got[1] != "user_id" {
		t.Errorf("partition columns %q", got)
	}
	if got := u.PartitionColumns(); len(got) != 1 || got[0] != "dataset_id" {
		t.Errorf("partition columns %q", got)
	}
}

// FitsPartition accepts every partition Identify renders, whatever the
// template's literals, the place of ${id} and the values (without the
// separator), and refuses it for another id.
func TestFitsWhatIdentifyRenders(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	const other = "fedcba9876543210fedcba9876543210"
	cases := []struct {
		tmpl string
		cols map[string]string
	}{
		{"${dataset_id}:${id}.${ext}", map[string]string{"dataset_id": "D", "ext": "tar.gz"}},
		{"${dataset_id}:${kind}${id}", map[string]string{"dataset_id": "D", "kind": "k"}},
		{"${dataset_id}:${id}_${lang}", map[string]string{"dataset_id": "D", "lang": "pt_BR"}},
		{"${dataset_id}:${id}${id}", map[string]string{"dataset_id": "D"}},
		{"${dataset_id}:${user_id}a${id}", map[string]string{"dataset_id": "D", "user_id": "u"}},
		{"${a}${id}${b}", map[string]string{"a": "0123", "b": "abcdef"}},
		{"${a}.x${id}y.${b}", map[string]string{"a": "x" + id + "y", "b": "y"}},
	}
	// Generated templates: literals of ":", ".", "a", "0" and "_",
	// ${id} and two columns, in any order; values of the same letters but
	// ":" (and sometimes the id itself).
	r := rand.New(rand.NewPCG(7, 8))
	letters := []string{".", "a", "0", "_", "ab", id[:4]}
	for range 3000 {
		var tmpl strings.Builder
		for range 1 + r.IntN(6) {
			switch r.IntN(5) {
			case 0:
				tmpl.WriteString("${id}")
			case 1:
				tmpl.WriteString("${c1}")
			case 2:
				tmpl.WriteString("${c2}")
			case 3:
				tmpl.WriteString(":")
			default:
				tmpl.WriteString(letters[r.IntN(len(letters))])
			}
		}
		cols := map[string]string{}
		for _, c := range []string{"c1", "c2"} {
			var v strings.Builder
			for range r.IntN(4) {
				if r.IntN(8) == 0 {
					v.WriteString(id)
				} else {
					v.WriteString(letters[r.IntN(len(letters))])
				}
			}
			cols[c] = v.String()
		}
		cases = append(cases, struct {
			tmpl string
			cols map[string]string
		}{tmpl.String(), cols})
	}
	for _, c := range cases {
		m := &Model{Name: "m", Partition: c.tmpl}
		got, err := m.Identify(id, func(col string) (string, bool) { v, ok := c.cols[col]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if !m.FitsPartition(id, got.Partition) {
			t.Fatalf("%s %v: FitsPartition refuses %q, the partition Identify renders", c.tmpl, c.cols, got.Partition)
		}
		if strings.Contains(c.tmpl, "${id}") && !strings.Contains(got.Partition, other) && m.FitsPartition(other, got.Partition) {
			t.Fatalf("%s %v: %q fits id %s too", c.tmpl, c.cols, got.Partition, other)
		}
	}
}

// The import checks every incoming record: no allocation.
func TestFitsPartitionAllocs(t *testing.T) {
	m := &Model{Name: "log", Partition: "${dataset_id}:user-rw:${user_id}"}
	const id = "0123456789abcdef0123456789abcdef"
	p := "fedcba9876543210fedcba9876543210:user-rw:0123456789abcdef0123456789abcdee"
	if !m.FitsPartition(id, p) {
		t.Fatal("no fit")
	}
	if n := testing.AllocsPerRun(1000, func() {
		_ = m.PartitionColumns()
		_ = m.FitsPartition(id, p)
	}); n != 0 {
		t.Errorf("%v allocations per record", n)
	}
}

func BenchmarkFitsPartition(b *testing.B) {
	m := &Model{Name: "user", Partition: "${dataset_id}:user-ro:${id}"}
	const id = "0123456789abcdef0123456789abcdef"
	p := "fedcba9876543210fedcba9876543210:user-ro:" + id
	for b.Loop() {
		if !m.FitsPartition(id, p) {
			b.Fatal("no fit")
		}
	}
}

// An importer calls FitsPartition before it checks the id: a record with
// an empty id (a bundle's model_uuid is not validated) must be refused,
// not crash the import's reading goroutine.
func TestFitsPartitionEmptyID(t *testing.T) {
	m := &Model{Name: "file", Partition: "${dataset_id}:${kind}${id}.${ext}"}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("FitsPartition(\"\", \"D:zz\") panics: %v", r)
		}
	}()
	if m.FitsPartition("", "D:zz") {
		t.Error("fits")
	}
}
