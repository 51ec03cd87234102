package fsic

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The fixtures were produced by running the original Morango (v0.8.2).

func readFixture(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile("../testdata/morango/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// canon returns v as JSON with object keys sorted, so that values can be
// compared with the fixtures whatever their key order. Bytes are taken as
// JSON.
func canon(t *testing.T, v any) string {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	if g, w := canon(t, got), canon(t, want); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func decode[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

type utilsFixture struct {
	Examples []struct {
		Function string            `json:"function"`
		Args     []json.RawMessage `json:"args"`
		Returns  json.RawMessage   `json:"returns"`
		After    []json.RawMessage `json:"args_after_call (mutated in place)"`
	} `json:"examples"`
	// The keys are read into a map: one has a comma, which a struct tag
	// cannot hold.
	FromSyncScenario []map[string]json.RawMessage `json:"from_sync_scenario"`
}

// TestFixtureExamples replays every fsic_utils example. Where the original
// changed its arguments in place, the fixture records them after the call:
// RemoveRedundant works in place too, and is compared with them; Expand
// does not, so its arguments must be unchanged and only its result is
// compared.
func TestFixtureExamples(t *testing.T) {
	var fx utilsFixture
	readFixture(t, "fsic_utils.json", &fx)
	if len(fx.Examples) == 0 {
		t.Fatal("no examples")
	}
	for n, ex := range fx.Examples {
		what := fmt.Sprintf("%s #%d", ex.Function, n)
		switch ex.Function {
		case "remove_redundant_instance_counters":
			v := decode[V2](t, ex.Args[0])
			RemoveRedundant(&v)
			if ex.Returns != nil && string(ex.Returns) != "null" {
				t.Errorf("%s: fixture returns %s", what, ex.Returns)
			}
			sameJSON(t, what, v, ex.After[0])
		case "expand_fsic_for_use":
			v := decode[V2](t, ex.Args[0])
			filter := decode[[]string](t, ex.Args[1])
			before := canon(t, v)
			sameJSON(t, what, Expand(v, filter), ex.Returns)
			if canon(t, v) != before {
				t.Errorf("%s: Expand changed its argument", what)
			}
		case "calculate_directional_fsic_diff_v2":
			sameJSON(t, what, Diff(decode[Partitions](t, ex.Args[0]), decode[Partitions](t, ex.Args[1])), ex.Returns)
		case "calculate_directional_fsic_diff":
			sameJSON(t, what, DiffV1(decode[Counters](t, ex.Args[0]), decode[Counters](t, ex.Args[1])), ex.Returns)
		case "chunk_fsic_v2":
			got := Chunk(decode[Partitions](t, ex.Args[0]), decode[int](t, ex.Args[1]))
			sameJSON(t, what, got, ex.Returns)
		default:
			t.Errorf("%s: no test for this function", what)
		}
	}
}

// TestFixtureFromSyncScenario replays the four transfers of the sync
// scenario: the FSICs each side sent, expanded and diffed.
func TestFixtureFromSyncScenario(t *testing.T) {
	var fx utilsFixture
	readFixture(t, "fsic_utils.json", &fx)
	if len(fx.FromSyncScenario) != 4 {
		t.Fatalf("%d transfers, want 4", len(fx.FromSyncScenario))
	}
	for _, m := range fx.FromSyncScenario {
		tr := struct {
			Transfer                                                   string
			ClientRaw, ServerRaw, ClientExpanded, ServerExpanded, Diff json.RawMessage
		}{decode[string](t, m["transfer"]), m["client_fsic_raw"], m["server_fsic_raw"],
			m["client_expanded"], m["server_expanded"], m["diff_v2(sending, receiving)"]}
		dir, filterText, ok := strings.Cut(tr.Transfer, " filter=")
		if !ok || (dir != "push" && dir != "pull") || tr.Diff == nil {
			t.Fatalf("transfer %q", tr.Transfer)
		}
		filter := strings.Split(filterText, "\n")
		client, err := Parse(tr.ClientRaw)
		if err != nil {
			t.Fatalf("%s: client: %v", tr.Transfer, err)
		}
		server, err := Parse(tr.ServerRaw)
		if err != nil {
			t.Fatalf("%s: server: %v", tr.Transfer, err)
		}
		for _, v := range []V2{client, server} {
			if err := Validate(v, filter); err != nil {
				t.Errorf("%s: %v", tr.Transfer, err)
			}
		}
		ce, se := Expand(client, filter), Expand(server, filter)
		sameJSON(t, tr.Transfer+": client expanded", ce, tr.ClientExpanded)
		sameJSON(t, tr.Transfer+": server expanded", se, tr.ServerExpanded)
		sending, receiving := ce, se
		if dir == "pull" {
			sending, receiving = se, ce
		}
		sameJSON(t, tr.Transfer+": diff", Diff(sending, receiving), tr.Diff)
	}
}

type scenarioState struct {
	Store []struct {
		ID        string `json:"id"`
		Partition string `json:"partition"`
		LSI       string `json:"last_saved_instance"`
		LSC       int64  `json:"last_saved_counter"`
	} `json:"store"`
	RMC []struct {
		Store    string `json:"store_model_id"`
		Instance string `json:"instance_id"`
		Counter  int64  `json:"counter"`
	} `json:"record_max_counters"`
	DMC []struct {
		Instance  string `json:"instance_id"`
		Partition string `json:"partition"`
		Counter   int64  `json:"counter"`
	} `json:"database_max_counters"`
	FSIC map[string]struct {
		V2Producer json.RawMessage `json:"v2_producer"`
		V2Receiver json.RawMessage `json:"v2_receiver"`
		V1Producer json.RawMessage `json:"v1_producer"`
		V1Receiver json.RawMessage `json:"v1_receiver"`
	} `json:"fsic"`
}

type scenarioFixture struct {
	Filters map[string]string `json:"filters"`
	Steps   []struct {
		Step  string        `json:"step"`
		Peer  string        `json:"peer"`
		State scenarioState `json:"state"`
	} `json:"steps"`
	Transfers []struct {
		Filter     string          `json:"filter"`
		Push       bool            `json:"push"`
		ClientFSIC json.RawMessage `json:"client_fsic"`
		ServerFSIC json.RawMessage `json:"server_fsic"`
	} `json:"transfers"`
}

func (s *scenarioState) rows() []MaxCounter {
	var out []MaxCounter
	for _, r := range s.DMC {
		out = append(out, MaxCounter{Instance: r.Instance, Partition: r.Partition, Counter: r.Counter})
	}
	return out
}

// producerKeep is the original's producer-side reduction: keep (P, I) if
// some Store row has a partition starting with P and I as its last writer.
func (s *scenarioState) producerKeep(partition, instance string) bool {
	for _, r := range s.Store {
		if strings.HasPrefix(r.Partition, partition) && r.LSI == instance {
			return true
		}
	}
	return false
}

// receiverKeep is the original's receiver-side reduction: keep (P, I) if
// some record-max counter of I belongs to a Store row whose partition
// starts with P.
func (s *scenarioState) receiverKeep(partition, instance string) bool {
	part := map[string]string{}
	for _, r := range s.Store {
		part[r.ID] = r.Partition
	}
	for _, r := range s.RMC {
		p, ok := part[r.Store]
		if r.Instance == instance && ok && strings.HasPrefix(p, partition) {
			return true
		}
	}
	return false
}

// TestCalculateSyncScenario computes, for every step of the sync scenario
// and each of its three filters, the v2 FSICs (with the original's
// reduction, from the step's Store and record-max counter rows) and the v1
// FSICs (which have no reduction), and compares them with the original's.
func TestCalculateSyncScenario(t *testing.T) {
	var fx scenarioFixture
	readFixture(t, "sync_scenario.json", &fx)
	if len(fx.Steps) == 0 || len(fx.Filters) != 3 {
		t.Fatalf("%d steps, %d filters", len(fx.Steps), len(fx.Filters))
	}
	checked := 0
	for _, step := range fx.Steps {
		st := step.State
		rows := st.rows()
		if len(st.FSIC) != len(fx.Filters) {
			t.Errorf("%s: %d filters in the fixture", step.Step, len(st.FSIC))
		}
		for name, text := range fx.Filters {
			filter := strings.Split(text, "\n")
			want, ok := st.FSIC[strings.Join(filter, "|")]
			if !ok {
				t.Fatalf("%s: no FSIC for filter %s", step.Step, name)
			}
			what := step.Step + " / " + name
			sameJSON(t, what+" v2 producer", Calculate(rows, filter, st.producerKeep), want.V2Producer)
			sameJSON(t, what+" v2 receiver", Calculate(rows, filter, st.receiverKeep), want.V2Receiver)
			sameJSON(t, what+" v1 producer", CalculateV1(rows, filter, true), want.V1Producer)
			sameJSON(t, what+" v1 receiver", CalculateV1(rows, filter, false), want.V1Receiver)
			if err := Validate(Calculate(rows, filter, nil), filter); err != nil {
				t.Errorf("%s: %v", what, err)
			}
			checked++
		}
	}
	t.Logf("%d steps × filters checked", checked)
}

// TestCalculateSyncScenarioReductionMatters shows the fixture's FSICs
// depend on the reduction: without it some differ.
func TestCalculateSyncScenarioReductionMatters(t *testing.T) {
	var fx scenarioFixture
	readFixture(t, "sync_scenario.json", &fx)
	differ := 0
	for _, step := range fx.Steps {
		for _, text := range fx.Filters {
			filter := strings.Split(text, "\n")
			want := step.State.FSIC[strings.Join(filter, "|")]
			if canon(t, Calculate(step.State.rows(), filter, nil)) != canon(t, want.V2Receiver) {
				differ++
			}
		}
	}
	if differ == 0 {
		t.Error("the fixture does not exercise the reduction")
	}
}

// TestClaimsSyncScenario checks that after each transfer of the scenario
// the receiver's counters, as the original recorded them, cover every
// counter Claims returns for the sender's FSIC: we claim nothing the
// original did not hold.
func TestClaimsSyncScenario(t *testing.T) {
	var fx scenarioFixture
	readFixture(t, "sync_scenario.json", &fx)
	// The step recorded on the receiving peer after each transfer.
	after := []string{"B_after_push_all", "A_after_pull_all", "A_after_pull_alice_rw_partition_only", "B_after_push_all_again"}
	if len(fx.Transfers) != len(after) {
		t.Fatalf("%d transfers", len(fx.Transfers))
	}
	for k, tr := range fx.Transfers {
		var st *scenarioState
		for i := range fx.Steps {
			if name, _, _ := strings.Cut(fx.Steps[i].Step, " "); name == after[k] {
				st = &fx.Steps[i].State
			}
		}
		if st == nil {
			t.Fatalf("no step %s", after[k])
		}
		sent := tr.ServerFSIC
		if tr.Push {
			sent = tr.ClientFSIC
		}
		v, err := Parse(sent)
		if err != nil {
			t.Fatal(err)
		}
		filter := strings.Split(tr.Filter, "\n")
		claims := Claims(v, filter)
		if len(claims) == 0 {
			t.Errorf("%s: no claims", after[k])
		}
		for _, c := range claims {
			if l := level(st.rows(), c.Instance, c.Partition); l < c.Counter {
				t.Errorf("%s: claim %+v above the original's level %d", after[k], c, l)
			}
		}
	}
}

// level returns the highest counter of instance on a partition that is a
// prefix of partition.
func level(rows []MaxCounter, instance, partition string) int64 {
	var l int64
	for _, r := range rows {
		if r.Instance == instance && strings.HasPrefix(partition, r.Partition) {
			l = max(l, r.Counter)
		}
	}
	return l
}
