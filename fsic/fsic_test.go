package fsic

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The vectors below come from the original's repository tests
// (tests/testapp/tests/models/test_core.py, test_fsic_utils.py,
// tests/testapp/tests/sync/test_operations.py) and from the reference
// notes on the original, sections 3.2 to 3.4.

func mc(instance, partition string, counter int64) MaxCounter {
	return MaxCounter{Instance: instance, Partition: partition, Counter: counter}
}

// FilterMaxCounterTestCase: v1 FSICs.
func TestCalculateV1(t *testing.T) {
	a, b := strings.Repeat("a", 32), strings.Repeat("b", 32)
	rows := []MaxCounter{
		mc(a, "AAA", 15), mc(a, "AAA:user_id:joe", 20), mc(a, "BBB:user_id:emily", 17),
		mc(b, "AAA:user_id:joe", 10), mc(b, "BBB", 12), mc(b, "BBB:user_id:rick", 5), mc(b, "BBB:user_id:emily", 2),
	}
	for _, tc := range []struct {
		name     string
		filter   []string
		producer bool
		want     Counters
	}{
		{"filter_not_in_dmc", []string{"ZZZ"}, false, Counters{}},
		{"instances_for_one_partition_but_not_other", []string{"AAA:user_id:joe", "BBB:user_id:rick"}, false, Counters{b: 10}},
		{"insufficient_instances_for_all_partitions", []string{"AAA", "BBBuser_id:richard"}, false, Counters{}},
		{"single_partition_with_all_instances", []string{"AAA:user_id:joe"}, false, Counters{a: 20, b: 10}},
		{"all_partitions_have_all_instances", []string{"AAA:user_id:joe", "BBB:user_id:emily"}, false, Counters{a: 17, b: 10}},
		{"producer_vs_receiver_fsics/producer", []string{"AAA:user_id:joe", "BBB"}, true, Counters{a: 20, b: 12}},
		{"producer_vs_receiver_fsics/receiver", []string{"AAA:user_id:joe", "BBB"}, false, Counters{b: 10}},
		{"no filter", nil, true, Counters{}},
	} {
		if got := CalculateV1(rows, tc.filter, tc.producer); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCalculate(t *testing.T) {
	me := strings.Repeat("e", 32)
	for _, tc := range []struct {
		name   string
		rows   []MaxCounter
		filter []string
		keep   func(p, i string) bool
		want   string
	}{
		{"empty partition is above every filter",
			[]MaxCounter{mc(me, "", 1)}, []string{"uid:user"}, nil,
			`{"super":{"":{"` + me + `":1}},"sub":{}}`},
		{"below, at and above the filter; others ignored",
			[]MaxCounter{mc("x", "", 3), mc("x", "D", 5), mc("y", "D:u", 2), mc("y", "D:u:1", 4), mc("x", "D:u:1", 5), mc("z", "E", 9), mc("z", "D:v", 9)},
			[]string{"D:u"}, nil,
			`{"super":{"":{"x":3},"D":{"x":5}},"sub":{"D:u":{"y":2},"D:u:1":{"y":4}}}`},
		{"a partition in both halves",
			[]MaxCounter{mc("x", "a", 3)}, []string{"a", "ab"}, nil,
			`{"super":{"a":{"x":3}},"sub":{"a":{"x":3}}}`},
		{"reduction drops a pair and the partition with it",
			[]MaxCounter{mc("x", "D", 5), mc("y", "D", 6), mc("y", "D:u", 7)}, []string{"D:u"},
			func(p, i string) bool { return i == "x" },
			`{"super":{"D":{"x":5}},"sub":{}}`},
		{"no filter", []MaxCounter{mc("x", "", 1)}, nil, nil, `{"super":{},"sub":{}}`},
	} {
		sameJSON(t, tc.name, Calculate(tc.rows, tc.filter, tc.keep), []byte(tc.want))
	}
}

func TestCalculateKeepAsked(t *testing.T) {
	var asked []string
	Calculate([]MaxCounter{mc("x", "", 1), mc("x", "D:u", 2), mc("x", "E", 3)}, []string{"D"}, func(p, i string) bool {
		asked = append(asked, p+"/"+i)
		return true
	})
	if want := []string{"/x", "D:u/x"}; !slices.Equal(asked, want) {
		t.Errorf("keep asked about %v, want %v (not rows outside the filter)", asked, want)
	}
}

func TestRemoveRedundant(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"test_remove_redundant_instance_counters",
			`{"super":{"p":{"a":5,"b":3,"c":7},"p3":{"a":1,"c":8,"d":14}},
			  "sub":{"p1":{"a":5,"b":9,"c":7,"d":2},"p1i":{"e":5,"c":4,"d":1},"p1j":{"b":3,"c":5},"p2i":{"a":5,"e":5},"p3i":{"a":8,"c":5,"d":2}}}`,
			`{"super":{"p":{"a":5,"b":3,"c":7},"p3":{"c":8,"d":14}},
			  "sub":{"p1":{"b":9,"d":2},"p1i":{"e":5},"p1j":{},"p2i":{"e":5},"p3i":{"a":8}}}`},
		{"reference 3.4",
			`{"super":{"p":{"A":5,"B":3}},"sub":{"p1":{"A":5,"B":4,"C":2},"p1x":{"B":4,"C":1},"p2":{"A":2}}}`,
			`{"super":{"p":{"A":5,"B":3}},"sub":{"p1":{"B":4,"C":2},"p1x":{},"p2":{}}}`},
		{"sub wins where both halves have the partition",
			`{"super":{"p":{"A":9}},"sub":{"p":{"A":1},"p1":{"A":5}}}`,
			`{"super":{"p":{"A":9}},"sub":{"p":{"A":1},"p1":{"A":5}}}`},
		{"nil halves", `{"super":null,"sub":{"p":{"A":1}}}`, `{"super":{},"sub":{"p":{"A":1}}}`},
	} {
		v := decode[V2](t, []byte(tc.in))
		RemoveRedundant(&v)
		sameJSON(t, tc.name, v, []byte(tc.want))
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		filter   []string
		want     string
	}{
		{"test_expand_fsic_for_use",
			`{"super":{"r":{"a":5,"b":3,"c":7},"q":{"f":5}},"sub":{"rp1":{"a":1,"b":9,"d":2},"rp1i":{"e":5},"rp2i":{"e":5},"tt":{}}}`,
			[]string{"rp1", "rp2", "q1", "t"},
			`{"rp1":{"a":5,"b":9,"c":7,"d":2},"rp1i":{"e":5},"rp2":{"a":5,"b":3,"c":7},"rp2i":{"e":5},"q1":{"f":5}}`},
		{"reference 3.4",
			`{"super":{"p":{"A":5,"B":3}},"sub":{"p1":{"B":4,"C":2},"p1x":{},"p2x":{"D":1}}}`,
			[]string{"p1", "p2"},
			`{"p1":{"A":5,"B":4,"C":2},"p2":{"A":5,"B":3},"p2x":{"D":1}}`},
		{"a partition in both halves inherits from itself",
			`{"super":{"a":{"x":3}},"sub":{"a":{"y":1}}}`, []string{"a", "ab"},
			`{"a":{"x":3,"y":1}}`},
	} {
		v := decode[V2](t, []byte(tc.in))
		before := canon(t, v)
		sameJSON(t, tc.name, Expand(v, tc.filter), []byte(tc.want))
		if canon(t, v) != before {
			t.Errorf("%s: argument changed", tc.name)
		}
	}
}

func TestDiff(t *testing.T) {
	full := `{"p":{"a":5,"c":7},"p1":{"b":9,"d":2},"p1i":{"a":7,"e":6,"f":1},"p2":{"a":8,"q":5}}`
	for _, tc := range []struct{ name, sender, receiver, want string }{
		{"test_calculate_directional_fsic_diff_v2", full,
			`{"p":{"a":3,"b":4,"c":9},"p1":{"b":9,"d":2},"p1i":{"a":6,"e":5,"c":9},"p3":{"a":2,"c":3}}`,
			`{"p":{"a":3},"p1i":{"a":6,"e":5,"f":0},"p2":{"a":3,"q":0}}`},
		{"test_calculate_directional_fsic_diff_v2_identical", full, full, `{}`},
		{"test_calculate_directional_fsic_diff_v2_receiver_is_higher", full,
			`{"p":{"a":6,"c":9},"p1":{"b":11,"d":12},"p1i":{"a":71,"e":16,"f":21},"p2":{"a":48,"q":51}}`, `{}`},
		{"reference 3.4 (receiver counters below P are ignored)",
			`{"p":{"A":5},"p1":{"B":4,"C":2}}`, `{"p":{"B":9},"p1":{"C":2},"p1x":{"A":7}}`, `{"p":{"A":0}}`},
	} {
		got := Diff(decode[Partitions](t, []byte(tc.sender)), decode[Partitions](t, []byte(tc.receiver)))
		sameJSON(t, tc.name, got, []byte(tc.want))
	}
	got := DiffV1(Counters{"A": 5, "B": 3, "C": 1}, Counters{"A": 5, "B": 1})
	if want := (Counters{"B": 1, "C": 0}); !reflect.DeepEqual(got, want) {
		t.Errorf("DiffV1: got %v, want %v", got, want)
	}
}

func TestChunk(t *testing.T) {
	fsic := `{"p":{"a":5,"c":7},"p1":{"a":7,"b":9,"d":2},"p1i":{"a":7,"b":19,"c":32,"d":12},"p2":{"a":8}}`
	ones := `[{"p":{"a":5}},{"p":{"c":7}},{"p1":{"a":7}},{"p1":{"b":9}},{"p1":{"d":2}},{"p1i":{"a":7}},{"p1i":{"b":19}},{"p1i":{"c":32}},{"p1i":{"d":12}},{"p2":{"a":8}}]`
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		// test_chunk_fsic_v2
		{fsic, 1, ones},
		{fsic, 2, ones},
		{fsic, 3, `[{"p":{"a":5,"c":7}},{"p1":{"a":7,"b":9}},{"p1":{"d":2}},{"p1i":{"a":7,"b":19}},{"p1i":{"c":32,"d":12}},{"p2":{"a":8}}]`},
		{fsic, 4, `[{"p":{"a":5,"c":7}},{"p1":{"a":7,"b":9,"d":2}},{"p1i":{"a":7,"b":19,"c":32}},{"p1i":{"d":12},"p2":{"a":8}}]`},
		{fsic, 5, `[{"p":{"a":5,"c":7},"p1":{"a":7}},{"p1":{"b":9,"d":2},"p1i":{"a":7}},{"p1i":{"b":19,"c":32,"d":12}},{"p2":{"a":8}}]`},
		{fsic, 6, `[{"p":{"a":5,"c":7},"p1":{"a":7,"b":9}},{"p1":{"d":2},"p1i":{"a":7,"b":19,"c":32}},{"p1i":{"d":12},"p2":{"a":8}}]`},
		// reference 3.4
		{`{"p":{"a":5,"c":7},"p1":{"a":7,"b":9,"d":2}}`, 3, `[{"p":{"a":5,"c":7}},{"p1":{"a":7,"b":9}},{"p1":{"d":2}}]`},
		{`{"p":{},"q":{"a":1}}`, 2, `[{"q":{"a":1}}]`},
		{`{}`, 3, `[]`},
		{fsic, 0, ones},
		{fsic, -1, ones},
	} {
		got := Chunk(decode[Partitions](t, []byte(tc.in)), tc.n)
		sameJSON(t, fmt.Sprintf("Chunk(%s, %d)", tc.in, tc.n), got, []byte(tc.want))
	}
}

func TestPrefixes(t *testing.T) {
	keys := []string{"p", "p1", "p12", "q"}
	if got, want := Prefixes(keys, false), map[string][]string{"p1": {"p"}, "p12": {"p", "p1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Prefixes: got %v, want %v", got, want)
	}
	want := map[string][]string{"p": {"p"}, "p1": {"p", "p1"}, "p12": {"p", "p1", "p12"}, "q": {"q"}}
	if got := Prefixes(keys, true); !reflect.DeepEqual(got, want) {
		t.Errorf("Prefixes with self: got %v, want %v", got, want)
	}
	if got := SubPartitions(keys); !slices.Equal(got, []string{"p1", "p12"}) {
		t.Errorf("SubPartitions: got %v", got)
	}
	// Keys in another order, repeated, with siblings between a prefix and
	// its descendants.
	keys = []string{"ab", "a", "", "abc", "ab", "b", "aa", "abd", "ac"}
	got := Prefixes(keys, false)
	for _, k := range keys {
		var want []string
		for _, q := range slices.Compact(slices.Sorted(slices.Values(keys))) {
			if q != k && strings.HasPrefix(k, q) {
				want = append(want, q)
			}
		}
		if !slices.Equal(got[k], want) {
			t.Errorf("Prefixes[%q] = %q, want %q", k, got[k], want)
		}
	}
}

func TestSelectors(t *testing.T) {
	got := Selectors(Partitions{"p1": {"b": 0, "a": 3}, "p": {"c": 2}})
	want := []Selector{{"p", "c", 2}, {"p1", "a", 3}, {"p1", "b", 0}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if Selectors(Partitions{}) != nil {
		t.Error("selectors of an empty diff")
	}
	s := Selector{Partition: "p1", Instance: "a", After: 3}
	for _, tc := range []struct {
		partition string
		history   Counters
		want      bool
	}{
		{"p1x", Counters{"a": 4}, true},
		{"p1", Counters{"b": 9, "a": 4}, true}, // a is not the latest writer
		{"p1", Counters{"a": 3}, false},
		{"p2", Counters{"a": 9}, false},
		{"p1", Counters{"b": 9}, false},
	} {
		if got := s.Matches(tc.partition, tc.history); got != tc.want {
			t.Errorf("Matches(%q, %v) = %v", tc.partition, tc.history, got)
		}
	}
}

// record is a Store row of the queuing scenarios: its partition and history
// (record-max counters); its latest version is its one history entry.
type record struct {
	partition string
	history   Counters
}

func records(rows ...MaxCounter) []record {
	var out []record
	for _, r := range rows {
		out = append(out, record{r.Partition, Counters{r.Instance: r.Counter}})
	}
	return out
}

// receiverKeep is the original's receiver-side reduction over store.
func receiverKeep(store []record) func(p, i string) bool {
	return func(p, i string) bool {
		for _, r := range store {
			if _, ok := r.history[i]; ok && strings.HasPrefix(r.partition, p) {
				return true
			}
		}
		return false
	}
}

func selected(sels []Selector, r record) bool {
	for _, s := range sels {
		if s.Matches(r.partition, r.history) {
			return true
		}
	}
	return false
}

// FSICPartitionEdgeCaseQueuingTestCase: both FSICs are computed with the
// receiving side's reduction against one shared store, as the original
// test does.
func TestQueuingScenarios(t *testing.T) {
	const i1, i2, i3, i4 = "i1", "i2", "i3", "i4"
	for _, tc := range []struct {
		name             string
		filter           []string
		sent, notSent    []record
		sender, receiver []MaxCounter
		wantSender       string
		wantReceiver     string
		wantDiff         string
	}{
		{
			name:   "test_soud_to_full_to_full",
			filter: []string{"p"},
			sent:   records(mc(i1, "p1", 6), mc(i3, "p", 5)),
			sender: []MaxCounter{mc(i1, "p1", 6), mc(i3, "p", 5)},
			// i4 is dropped by the reduction: no record has it in its history.
			receiver:     []MaxCounter{mc(i3, "p", 3), mc(i4, "p", 7)},
			wantSender:   `{"super":{},"sub":{"p":{"i3":5},"p1":{"i1":6}}}`,
			wantReceiver: `{"super":{},"sub":{"p":{"i3":3}}}`,
			wantDiff:     `{"p":{"i3":3},"p1":{"i1":0}}`,
		},
		{
			name:         "test_soud_to_full_to_soud",
			filter:       []string{"p1", "p2"},
			sent:         records(mc(i1, "p1", 6), mc(i1, "p2", 1), mc(i3, "p1", 5), mc(i3, "p2", 2)),
			notSent:      records(mc(i3, "p", 5)),
			sender:       []MaxCounter{mc(i1, "p1", 6), mc(i1, "p2", 1), mc(i3, "p", 5)},
			wantSender:   `{"super":{"p":{"i3":5}},"sub":{"p1":{"i1":6},"p2":{"i1":1}}}`,
			wantReceiver: `{"super":{},"sub":{}}`,
			wantDiff:     `{"p1":{"i1":0,"i3":0},"p2":{"i1":0,"i3":0}}`,
		},
		{
			name:         "test_subpartition_gets_included",
			filter:       []string{"p1"},
			sent:         records(mc(i1, "p1a", 2), mc(i1, "p1b", 5)),
			notSent:      records(mc(i1, "p2", 5), mc(i2, "p1", 2), mc(i2, "p", 2)),
			sender:       []MaxCounter{mc(i1, "p1", 5), mc(i2, "p2", 5)},
			wantSender:   `{"super":{},"sub":{"p1":{"i1":5}}}`,
			wantReceiver: `{"super":{},"sub":{}}`,
			wantDiff:     `{"p1":{"i1":0}}`,
		},
	} {
		keep := receiverKeep(append(slices.Clone(tc.sent), tc.notSent...))
		sender := Calculate(tc.sender, tc.filter, keep)
		receiver := Calculate(tc.receiver, tc.filter, keep)
		sameJSON(t, tc.name+": sender", sender, []byte(tc.wantSender))
		sameJSON(t, tc.name+": receiver", receiver, []byte(tc.wantReceiver))
		for _, v := range []V2{sender, receiver} {
			for p := range v.Sub {
				if !underAny(p, tc.filter) {
					t.Errorf("%s: sub partition %q outside the filter", tc.name, p)
				}
			}
		}
		diff := Diff(Expand(sender, tc.filter), Expand(receiver, tc.filter))
		sameJSON(t, tc.name+": diff", diff, []byte(tc.wantDiff))
		sels := Selectors(diff)
		for _, r := range tc.sent {
			if !selected(sels, r) {
				t.Errorf("%s: %v not sent", tc.name, r)
			}
		}
		for _, r := range tc.notSent {
			if selected(sels, r) {
				t.Errorf("%s: %v sent", tc.name, r)
			}
		}
	}
}

// TestSelectOnHistory is the case the Selector documentation describes: the
// sender merged record R into a new version L@9 whose database-max counter
// is not raised yet, and R's history holds I@3. The receiver is level with
// L (8) and has nothing from I. Selecting on the latest writer would leave
// R behind while Claims then records I up to 3; selecting on the history
// sends it.
func TestSelectOnHistory(t *testing.T) {
	filter := []string{"P"}
	sender := Calculate([]MaxCounter{mc("I", "P", 3), mc("L", "P", 8)}, filter, nil)
	receiver := Calculate([]MaxCounter{mc("L", "P", 8)}, filter, nil)
	sels := Selectors(Diff(Expand(sender, filter), Expand(receiver, filter)))
	if want := []Selector{{"P", "I", 0}}; !slices.Equal(sels, want) {
		t.Fatalf("selectors %v, want %v", sels, want)
	}
	r := record{"P:x", Counters{"I": 3, "L": 9}}
	latest := Counters{"L": 9}
	if !selected(sels, r) {
		t.Error("R is not selected on its history")
	}
	if selected(sels, record{r.partition, latest}) {
		t.Error("R would be selected on its latest version alone; the case shows nothing")
	}
	if claims := Claims(sender, filter); !slices.Contains(claims, mc("I", "P", 3)) {
		t.Errorf("claims %v do not record I up to 3", claims)
	}
}
