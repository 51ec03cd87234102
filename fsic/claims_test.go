package fsic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestClaims(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      string
		filter []string
		local  []MaxCounter
		claims []MaxCounter
		after  []MaxCounter // MaxMerge(local, claims)
	}{
		{
			// The original's update_fsics wrote 5 over 10 (reference 3.5).
			name:   "a lower remote counter does not lower the local one",
			v:      `{"super":{},"sub":{"P":{"i":5}}}`,
			filter: []string{"P"},
			local:  []MaxCounter{mc("i", "P", 10)},
			claims: []MaxCounter{mc("i", "P", 5)},
			after:  []MaxCounter{mc("i", "P", 10)},
		},
		{
			name:   "a higher remote counter raises the local one",
			v:      `{"super":{},"sub":{"P":{"i":12}}}`,
			filter: []string{"P"},
			local:  []MaxCounter{mc("i", "P", 10)},
			claims: []MaxCounter{mc("i", "P", 12)},
			after:  []MaxCounter{mc("i", "P", 12)},
		},
		{
			// The original dropped the Super half.
			name:   "super counters are claimed on every filter prefix below them",
			v:      `{"super":{"":{"i":7},"P":{"j":4}},"sub":{}}`,
			filter: []string{"P:a", "P:b", "Q"},
			claims: []MaxCounter{mc("i", "P:a", 7), mc("j", "P:a", 4), mc("i", "P:b", 7), mc("j", "P:b", 4), mc("i", "Q", 7)},
			after:  []MaxCounter{mc("i", "P:a", 7), mc("j", "P:a", 4), mc("i", "P:b", 7), mc("j", "P:b", 4), mc("i", "Q", 7)},
		},
		{
			name:   "sub counters are claimed as they are, below the filter prefix too",
			v:      `{"super":{},"sub":{"P":{"i":3},"P:x":{"i":8,"j":2}}}`,
			filter: []string{"P"},
			local:  []MaxCounter{mc("i", "", 4)},
			claims: []MaxCounter{mc("i", "P", 3), mc("i", "P:x", 8), mc("j", "P:x", 2)},
			after:  []MaxCounter{mc("i", "", 4), mc("i", "P", 3), mc("i", "P:x", 8), mc("j", "P:x", 2)},
		},
		{
			name:   "the highest of a super and a sub counter on the same prefix",
			v:      `{"super":{"":{"i":3,"j":9}},"sub":{"P":{"i":5,"j":1}}}`,
			filter: []string{"P"},
			claims: []MaxCounter{mc("i", "P", 5), mc("j", "P", 9)},
			after:  []MaxCounter{mc("i", "P", 5), mc("j", "P", 9)},
		},
		{
			name:   "nothing outside the filter, nothing not above 0",
			v:      `{"super":{"R":{"i":7},"P":{"k":0}},"sub":{"Q":{"i":7},"P":{"j":-1}}}`,
			filter: []string{"P"},
			local:  []MaxCounter{mc("i", "Q", 1)},
			after:  []MaxCounter{mc("i", "Q", 1)},
		},
		{
			name:   "a super partition equal to a filter prefix is not above it",
			v:      `{"super":{"P":{"i":7}},"sub":{}}`,
			filter: []string{"P"},
		},
	} {
		v := decode[V2](t, []byte(tc.v))
		before := canon(t, v)
		claims := Claims(v, tc.filter)
		if !slices.Equal(claims, tc.claims) {
			t.Errorf("%s: claims\n got %v\nwant %v", tc.name, claims, tc.claims)
		}
		if canon(t, v) != before {
			t.Errorf("%s: Claims changed its argument", tc.name)
		}
		localBefore := slices.Clone(tc.local)
		if after := MaxMerge(tc.local, claims); !slices.Equal(after, tc.after) {
			t.Errorf("%s: after\n got %v\nwant %v", tc.name, after, tc.after)
		}
		if !slices.Equal(tc.local, localBefore) {
			t.Errorf("%s: MaxMerge changed its argument", tc.name)
		}
	}
}

func TestMaxMerge(t *testing.T) {
	got := MaxMerge(
		[]MaxCounter{mc("b", "P", 2), mc("a", "P", 9), mc("a", "", 1)},
		[]MaxCounter{mc("a", "P", 3), mc("b", "P", 5), mc("c", "Q", 1), mc("c", "Q", 4)},
	)
	want := []MaxCounter{mc("a", "", 1), mc("a", "P", 9), mc("b", "P", 5), mc("c", "Q", 4)}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// The properties below are checked on random databases: partitions are
// short strings over {a, b} (so that many are prefixes of others), with
// four instances. Each run is seeded and reproducible.

var universe = func() []string {
	out := []string{""}
	for n := 1; n <= 4; n++ {
		for _, p := range out {
			if len(p) == n-1 {
				out = append(out, p+"a", p+"b")
			}
		}
	}
	return out
}()

var instances = []string{"i0", "i1", "i2", "i3"}

func randomRows(r *rand.Rand, n int) []MaxCounter {
	seen := map[[2]string]bool{}
	var out []MaxCounter
	for range n {
		row := mc(instances[r.IntN(len(instances))], universe[r.IntN(len(universe))], r.Int64N(9)+1)
		if k := [2]string{row.Instance, row.Partition}; !seen[k] {
			seen[k] = true
			out = append(out, row)
		}
	}
	return out
}

func randomFilter(r *rand.Rand) []string {
	var f []string
	for range r.IntN(3) + 1 {
		f = append(f, universe[1+r.IntN(len(universe)-1)])
	}
	return f
}

// expandedLevel is the level of instance at partition in an expanded FSIC:
// its highest counter on a partition that is a prefix of partition.
func expandedLevel(e Partitions, instance, partition string) int64 {
	var l int64
	for p, m := range e {
		if strings.HasPrefix(partition, p) {
			l = max(l, m[instance])
		}
	}
	return l
}

func TestProperties(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 1))
		sender, receiver := randomRows(r, r.IntN(12)), randomRows(r, r.IntN(12))
		filter := randomFilter(r)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d, filter %q, sender %v, receiver %v: %s", seed, filter, sender, receiver, fmt.Sprintf(format, args...))
		}
		sv, rv := Calculate(sender, filter, nil), Calculate(receiver, filter, nil)
		se, re := Expand(sv, filter), Expand(rv, filter)
		sels := Selectors(Diff(se, re))
		merged := MaxMerge(receiver, Claims(sv, filter))
		for _, p := range universe {
			under := underAny(p, filter)
			for _, i := range instances {
				ls, lr := level(sender, i, p), level(receiver, i, p)
				// Expanding keeps every level under the filter.
				if under && expandedLevel(se, i, p) != ls {
					fail("expanded level of %s at %q is %d, want %d (%v)", i, p, expandedLevel(se, i, p), ls, se)
				}
				// Every version the sender holds and the receiver lacks
				// is selected: a record under p whose history holds a
				// version by i with counter c, lr < c <= ls.
				if under {
					for c := lr + 1; c <= ls; c++ {
						if !selected(sels, record{p, Counters{i: c}}) {
							fail("%s@%d at %q not selected by %v", i, c, p, sels)
						}
					}
				}
				// Claims raise the receiver exactly to the sender under
				// the filter, and leave it alone elsewhere.
				want := lr
				if under {
					want = max(lr, ls)
				}
				if got := level(merged, i, p); got != want {
					fail("after claims, level of %s at %q is %d, want %d", i, p, got, want)
				}
			}
		}
	}
}

// TestRemoveRedundantKeepsLevels checks that removing redundant counters
// never changes a level, in either half, and that no counter left has a
// prefix partition claiming it as high.
func TestRemoveRedundantKeepsLevels(t *testing.T) {
	for seed := range uint64(2000) {
		r := rand.New(rand.NewPCG(seed, 2))
		v := V2{Super: Partitions{}, Sub: Partitions{}}
		for _, row := range randomRows(r, r.IntN(14)) {
			half := v.Sub
			if r.IntN(2) == 0 {
				half = v.Super
			}
			put(half, row.Partition, row.Instance, row.Counter)
		}
		orig := V2{Super: clone(v.Super), Sub: clone(v.Sub)}
		RemoveRedundant(&v)
		levels := func(v V2) string {
			merged := clone(v.Super)
			for p, m := range v.Sub {
				merged[p] = m // Sub wins, as RemoveRedundant looks up
			}
			var b strings.Builder
			for _, p := range universe {
				for _, i := range instances {
					fmt.Fprintf(&b, "%d ", expandedLevel(merged, i, p))
				}
			}
			return b.String()
		}
		if levels(v) != levels(orig) {
			t.Fatalf("seed %d: levels changed: %v → %v", seed, orig, v)
		}
		merged := clone(orig.Super)
		for p, m := range orig.Sub {
			merged[p] = m
		}
		for k, half := range []Partitions{v.Super, v.Sub} {
			if want := []Partitions{orig.Super, orig.Sub}[k]; !slices.Equal(sortedKeys(half), sortedKeys(want)) {
				t.Fatalf("seed %d: partitions %v, want %v", seed, sortedKeys(half), sortedKeys(want))
			}
			for p, m := range half {
				for i, c := range m {
					for q, qm := range merged {
						if d, ok := qm[i]; ok && len(q) < len(p) && strings.HasPrefix(p, q) && d >= c {
							t.Fatalf("seed %d: %s@%d on %q left though %q has %d", seed, i, c, p, q, d)
						}
					}
				}
			}
		}
	}
}

// TestChunkProperties checks, on random diffs, that pieces hold at most n
// entries and together hold every counter once.
func TestChunkProperties(t *testing.T) {
	for seed := range uint64(1000) {
		r := rand.New(rand.NewPCG(seed, 3))
		p := Partitions{}
		for _, row := range randomRows(r, r.IntN(20)) {
			put(p, row.Partition, row.Instance, row.Counter)
		}
		n := 2 + r.IntN(6)
		got := Partitions{}
		for _, piece := range Chunk(p, n) {
			if Size(piece) > n {
				t.Fatalf("seed %d: piece %v has more than %d entries", seed, piece, n)
			}
			for q, m := range piece {
				for i, c := range m {
					if _, ok := got[q][i]; ok {
						t.Fatalf("seed %d: %q/%s twice", seed, q, i)
					}
					put(got, q, i, c)
				}
			}
		}
		if canon(t, got) != canon(t, p) {
			t.Fatalf("seed %d: pieces hold %v, want %v", seed, got, p)
		}
	}
}
