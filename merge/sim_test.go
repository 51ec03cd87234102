package merge

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// The simulation: several replicas of one record make edits, deletions and
// hard deletions with their own instance counters and merge each other's
// states, current or stale (sticks that were lost, carried twice or carried
// late). Every state that arises is kept in a pool; the properties are
// checked on the pool and after every step.

// seeds returns how many seeds a property test runs.
func seeds() int {
	if os.Getenv("MORANGO_SLOW_TESTS") == "1" {
		return 5000
	}
	return 200
}

type replica struct {
	inst    string
	counter int64
	st      *State
}

type sim struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	rule Rule
	// recreate lets replicas edit a record whose head is hard-deleted.
	recreate bool
	reps     []*replica
	pool     []State
	// Ground truth about every version made: its content and the history
	// of the state it was made in (its causal context).
	content  map[dot]Version
	context  map[dot]map[string]int64
	hardDots []dot
	trace    []string
}

func newSim(t *testing.T, seed uint64, recreate bool) *sim {
	s := &sim{
		t: t, seed: seed, recreate: recreate,
		rng:     rand.New(rand.NewPCG(seed, 0x6d6f72616e676f)),
		content: map[dot]Version{}, context: map[dot]map[string]int64{},
	}
	switch s.rng.IntN(3) {
	case 1:
		s.rule = ColumnRule("score", true)
	case 2:
		s.rule = ColumnRule("score", false)
	}
	n := 2 + s.rng.IntN(5)
	for i := range n {
		// Instance ids are not in creation order, so the tie-break by
		// instance is exercised both ways.
		s.reps = append(s.reps, &replica{inst: fmt.Sprintf("%c%d", 'a'+(i*7)%n, i)})
	}
	return s
}

func (s *sim) fatalf(format string, args ...any) {
	s.t.Helper()
	tail := s.trace
	if len(tail) > 30 {
		tail = tail[len(tail)-30:]
	}
	s.t.Fatalf("seed %d (recreate %v, rule %v): %s\nlast steps:\n  %s", s.seed, s.recreate, s.rule,
		fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
}

// scoreText returns a column value of a random JSON type.
func (s *sim) scoreText() string {
	switch s.rng.IntN(8) {
	case 0:
		return ""
	case 1:
		return `,"score":null`
	case 2:
		return `,"score":"` + string(rune('a'+s.rng.IntN(3))) + `"`
	case 3:
		return `,"score":true`
	case 4:
		return fmt.Sprintf(`,"score":%d.5e-1`, s.rng.IntN(5))
	}
	return fmt.Sprintf(`,"score":%d`, s.rng.IntN(4)-1)
}

func (s *sim) step() {
	r := s.reps[s.rng.IntN(len(s.reps))]
	op := s.rng.IntN(10)
	switch {
	case op < 4 && (r.st == nil || !r.st.Head.HardDeleted || s.recreate):
		r.counter++
		s.edit(r, Version{Instance: r.inst, Counter: r.counter,
			Serialized: fmt.Sprintf(`{"id":"r","note":"%s:%d"%s}`, r.inst, r.counter, s.scoreText())}, "edits")
	case op == 4 && r.st != nil && !r.st.Head.Deleted:
		r.counter++
		s.edit(r, Version{Instance: r.inst, Counter: r.counter, Serialized: r.st.Head.Serialized, Deleted: true}, "deletes")
	case op == 6 && r.st != nil && !r.st.Head.HardDeleted && s.rng.IntN(2) == 0:
		// rev4: an edit or deletion of a replica whose head waits to reach
		// its app (EditBeside keeps that head).
		r.counter++
		v := Version{Instance: r.inst, Counter: r.counter,
			Serialized: fmt.Sprintf(`{"id":"r","note":"%s:%d"%s}`, r.inst, r.counter, s.scoreText())}
		if s.rng.IntN(3) == 0 {
			v = Version{Instance: r.inst, Counter: r.counter, Serialized: r.st.Head.Serialized, Deleted: true}
		}
		next := EditBeside(r.st, v, r.st.Head, s.rule)
		d := v.dot()
		s.content[d] = v
		s.context[d] = maps.Clone(next.History)
		s.trace = append(s.trace, fmt.Sprintf("%s edits beside its head → %v", r.inst, next))
		s.check(r.st, next)
		r.st = &next
		s.pool = append(s.pool, next)
	case op == 5 && r.st != nil && !r.st.Head.HardDeleted:
		r.counter++
		s.edit(r, Version{Instance: r.inst, Counter: r.counter, Serialized: "{}", Deleted: true, HardDeleted: true}, "hard-deletes")
	default:
		var in State
		var from string
		if len(s.pool) > 0 && s.rng.IntN(3) == 0 {
			i := s.rng.IntN(len(s.pool))
			in, from = s.pool[i], fmt.Sprintf("stale state %d", i)
		} else {
			o := s.reps[s.rng.IntN(len(s.reps))]
			if o.st == nil || o == r {
				return
			}
			in, from = *o.st, o.inst
		}
		s.merge(r, in, from)
	}
}

func (s *sim) edit(r *replica, v Version, what string) {
	next := Edit(r.st, v)
	d := v.dot()
	s.content[d] = next.Head
	s.context[d] = maps.Clone(next.History)
	if v.HardDeleted {
		s.hardDots = append(s.hardDots, d)
	}
	s.trace = append(s.trace, fmt.Sprintf("%s %s → %v", r.inst, what, next))
	s.check(r.st, next)
	r.st = &next
	s.pool = append(s.pool, next)
}

func (s *sim) merge(r *replica, in State, from string) {
	res, err := Merge(r.st, in, s.rule)
	if err != nil {
		s.fatalf("%s merges %s: %v", r.inst, from, err)
	}
	s.trace = append(s.trace, fmt.Sprintf("%s merges %s (%v) → %v", r.inst, from, res.Outcome, res.State))
	next := res.State
	s.check(r.st, next)
	// The result's flags agree with the states.
	switch {
	case r.st == nil:
		if res.Outcome != New || !res.Changed || !res.Dirty {
			s.fatalf("new record: %+v", res)
		}
	default:
		if res.Changed != !next.equal(*r.st) || res.Dirty != (next.Head != r.st.Head) {
			s.fatalf("changed %v dirty %v for %v → %v", res.Changed, res.Dirty, *r.st, next)
		}
		if res.Outcome == AlreadyHave && !sameVersions(next, *r.st) ||
			res.Outcome == FastForward && (!sameVersions(next, in) || len(next.Conflicts()) > 0) {
			s.fatalf("outcome %v for %v + %v → %v", res.Outcome, *r.st, in, next)
		}
	}
	r.st = &next
	if res.Changed {
		s.pool = append(s.pool, next)
	}
}

// check checks a replica's step from prev to next.
func (s *sim) check(prev *State, next State) {
	s.t.Helper()
	s.checkState(next)
	if prev == nil {
		return
	}
	for inst, c := range prev.History {
		if next.History[inst] < c {
			s.fatalf("history of %s fell from %d to %d", inst, c, next.History[inst])
		}
	}
	// A version the replica had seen and dropped never comes back: erased
	// data stays erased.
	held := map[dot]bool{}
	for _, v := range prev.versions() {
		held[v.dot()] = true
	}
	for _, v := range next.versions() {
		if covers(prev.History, v) && !held[v.dot()] {
			s.fatalf("dropped version %s came back", v.dot())
		}
	}
}

// checkState checks the invariants of a state that arose.
func (s *sim) checkState(st State) {
	s.t.Helper()
	if err := st.Validate(); err != nil {
		s.fatalf("invalid state %v: %v", st, err)
	}
	if again := arrange(st.versions(), st.History, s.rule); !again.equal(st) {
		s.fatalf("head is not the greatest version: %v", st)
	}
	for _, v := range st.versions() {
		if want, ok := s.content[v.dot()]; !ok || want != v {
			s.fatalf("version %s carries %+v, was made as %+v", v.dot(), v, want)
		}
	}
	// Hard deletion wins over every concurrent version: a live version
	// beside a hard deletion was made after it (a re-creation).
	for _, x := range st.versions() {
		for _, h := range st.versions() {
			if !x.HardDeleted && h.HardDeleted && s.context[x.dot()][h.Instance] < h.Counter {
				s.fatalf("version %s is concurrent with hard deletion %s: %v", x.dot(), h.dot(), st)
			}
		}
	}
	// No hard deletion is superseded except by a re-creation.
	if !s.recreate {
		for _, h := range s.hardDots {
			if st.History[h.instance] >= h.counter && !st.Head.HardDeleted {
				s.fatalf("state has seen hard deletion %s but shows %v", h, st)
			}
		}
	}
}

func (s *sim) mergeState(a, b State) State {
	s.t.Helper()
	r, err := Merge(&a, b, s.rule)
	if err != nil {
		s.fatalf("merge %v + %v: %v", a, b, err)
	}
	return r.State
}

// checkAlgebra checks commutativity, idempotence and associativity on
// random triples from the pool.
func (s *sim) checkAlgebra(triples int) {
	if len(s.pool) == 0 {
		return
	}
	for range triples {
		a := s.pool[s.rng.IntN(len(s.pool))]
		b := s.pool[s.rng.IntN(len(s.pool))]
		c := s.pool[s.rng.IntN(len(s.pool))]
		ab, ba := s.mergeState(a, b), s.mergeState(b, a)
		if !ab.equal(ba) {
			s.fatalf("not commutative:\n a %v\n b %v\n ab %v\n ba %v", a, b, ab, ba)
		}
		s.checkState(ab)
		r, err := Merge(&a, a, s.rule)
		if err != nil || !r.State.equal(a) || r.Changed || r.Dirty || r.Outcome != AlreadyHave {
			s.fatalf("not idempotent: %v → %+v %v", a, r, err)
		}
		left := s.mergeState(ab, c)
		right := s.mergeState(a, s.mergeState(b, c))
		if !left.equal(right) {
			s.fatalf("not associative:\n a %v\n b %v\n c %v\n (ab)c %v\n a(bc) %v", a, b, c, left, right)
		}
	}
}

// converge makes every replica merge with every other (gather into the
// first, then scatter) and checks they end identical, that the result
// absorbs every state that arose, and returns it.
func (s *sim) converge() State {
	first := s.reps[0]
	for _, r := range s.reps[1:] {
		if r.st != nil {
			s.merge(first, *r.st, r.inst)
		}
	}
	if first.st == nil {
		return State{}
	}
	for _, r := range s.reps[1:] {
		s.merge(r, *first.st, first.inst)
	}
	final := *first.st
	for _, r := range s.reps {
		if !r.st.equal(final) {
			s.fatalf("replica %s did not converge:\n %v\n %v", r.inst, *r.st, final)
		}
	}
	for i, st := range s.pool {
		r, err := Merge(&final, st, s.rule)
		if err != nil || r.Changed || r.Outcome != AlreadyHave {
			s.fatalf("final state does not absorb pool state %d %v: %+v %v", i, st, r, err)
		}
	}
	return final
}

func (s *sim) run(steps, triples int) {
	for range steps {
		s.step()
	}
	s.checkAlgebra(triples)
	final := s.converge()
	if len(s.pool) == 0 {
		return
	}
	// The result does not depend on the order of arrival: folding every
	// state that arose, shuffled, gives it too.
	order := s.rng.Perm(len(s.pool))
	acc := s.pool[order[0]]
	for _, i := range order[1:] {
		acc = s.mergeState(acc, s.pool[i])
	}
	if !acc.equal(final) {
		s.fatalf("fold of all states %v differs from converged %v", acc, final)
	}
	if !s.recreate && len(s.hardDots) > 0 && !final.Head.HardDeleted {
		s.fatalf("hard deletion lost: %v", final)
	}
}

func TestSimulation(t *testing.T) {
	n := seeds()
	for _, recreate := range []bool{false, true} {
		t.Run(fmt.Sprintf("recreate=%v", recreate), func(t *testing.T) {
			var hardDeletes, tombstones int
			for seed := range uint64(n) {
				s := newSim(t, seed, recreate)
				s.run(30+s.rng.IntN(70), 40)
				hardDeletes += len(s.hardDots)
				if st := s.reps[0].st; st != nil && !st.Head.HardDeleted && len(st.Siblings) > len(st.Conflicts()) {
					tombstones++
				}
			}
			t.Logf("%d seeds, %d hard deletions, %d ended re-created over a hard deletion", n, hardDeletes, tombstones)
		})
	}
}
