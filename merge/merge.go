package merge

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
)

// Outcome says what kind of merge happened.
type Outcome int

// The outcomes, one per case of the original's dequeuing rules. Outcomes
// compare the versions held (head and siblings), not the histories, which
// are joined in every case.
const (
	// New: the device had no state for the record.
	New Outcome = iota + 1
	// AlreadyHave: the result holds the local versions and the local
	// history covers every incoming version: the incoming state was equal,
	// older or superseded.
	AlreadyHave
	// FastForward: the result holds the incoming versions, none of them in
	// conflict, and the incoming history covers every local version: the
	// local state was superseded.
	FastForward
	// Conflict: anything else. Concurrent versions met (the result keeps
	// versions of both sides, or a hard deletion erased a concurrent
	// version), or the incoming state brought conflicts the device did not
	// have.
	Conflict
)

func (o Outcome) String() string {
	switch o {
	case New:
		return "new"
	case AlreadyHave:
		return "already have"
	case FastForward:
		return "fast-forward"
	case Conflict:
		return "conflict"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is the outcome of a merge.
type Result struct {
	// State is the record's new state. It shares no memory with the inputs.
	State   State
	Outcome Outcome
	// Changed reports whether State differs from the local state (head,
	// siblings or history): the store row must be written.
	Changed bool
	// Dirty reports whether the head changed (its dot, Serialized, Deleted
	// or HardDeleted): the app row must be rewritten.
	Dirty bool
}

// Merge joins the incoming state of a record into the local one (nil for a
// record the device does not have) and picks the head under rule (nil for
// the default rule). The join is commutative, associative and idempotent, so
// devices that have merged the same states hold the same state whatever the
// order of arrival. Merge never makes a new version.
//
// Merge returns an error, and no result, if either state is invalid (see
// State.Validate), if the two hold the same dot with different content
// (only a bug or a forged file can do that), if each state claims to have
// superseded every version of the other (no history allows that), or if
// the result would hold more versions than a store row can keep.
func Merge(local *State, incoming State, rule Rule) (Result, error) {
	if err := incoming.Validate(); err != nil {
		return Result{}, fmt.Errorf("incoming state: %w", err)
	}
	if local == nil {
		st := arrange(incoming.versions(), maps.Clone(incoming.History), rule)
		if err := checkSize(st); err != nil {
			return Result{}, err
		}
		return Result{State: st, Outcome: New, Changed: true, Dirty: true}, nil
	}
	if err := local.Validate(); err != nil {
		return Result{}, fmt.Errorf("local state: %w", err)
	}
	st, err := join(*local, incoming, rule)
	if err != nil {
		return Result{}, err
	}
	if err := checkSize(st); err != nil {
		return Result{}, err
	}
	res := Result{State: st, Changed: !st.equal(*local), Dirty: st.Head != local.Head}
	switch {
	case sameVersions(st, *local) && coversAll(local.History, incoming):
		res.Outcome = AlreadyHave
	case len(st.Conflicts()) == 0 && sameVersions(st, incoming) && coversAll(incoming.History, *local):
		res.Outcome = FastForward
	default:
		res.Outcome = Conflict
	}
	return res, nil
}

// join computes the join of two valid states. A version of one side stays
// if the other side holds it too or has not seen it. Then a version that is
// not hard-deleted and is held by one side only is erased if a staying
// hard-deleted version is one that side has not seen: the two are
// concurrent, and hard deletion wins. The histories join pointwise, and
// arrange picks the head.
func join(a, b State, rule Rule) (State, error) {
	as, bs := a.versions(), b.versions()
	inA := make(map[dot]Version, len(as))
	for _, v := range as {
		inA[v.dot()] = v
	}
	inB := make(map[dot]Version, len(bs))
	for _, v := range bs {
		inB[v.dot()] = v
	}
	type candidate struct {
		v    Version
		from *State // the side holding v, nil if both hold it
	}
	kept := make([]candidate, 0, len(as)+len(bs))
	var hard []Version
	keep := func(v Version, from *State) {
		kept = append(kept, candidate{v, from})
		if v.HardDeleted {
			hard = append(hard, v)
		}
	}
	for _, v := range as {
		w, ok := inB[v.dot()]
		switch {
		case ok && !v.sameContent(w):
			return State{}, fmt.Errorf("incoming version %s differs from the local version with the same id", v.dot())
		case ok:
			keep(v, nil)
		case !covers(b.History, v):
			keep(v, &a)
		}
	}
	for _, v := range bs {
		if _, ok := inA[v.dot()]; !ok && !covers(a.History, v) {
			keep(v, &b)
		}
	}
	vs := make([]Version, 0, len(kept))
	for _, c := range kept {
		if !c.v.HardDeleted && c.from != nil && !coversAllOf(c.from.History, hard) {
			continue // erased by a concurrent hard deletion
		}
		vs = append(vs, c.v)
	}
	if len(vs) == 0 {
		return State{}, errors.New("incoming and local states each supersede all versions of the other")
	}
	h := maps.Clone(a.History)
	for inst, c := range b.History {
		if h[inst] < c {
			h[inst] = c
		}
	}
	return arrange(vs, h, rule), nil
}

// coversAllOf reports whether history h covers every version of vs.
func coversAllOf(h map[string]int64, vs []Version) bool {
	for _, v := range vs {
		if !covers(h, v) {
			return false
		}
	}
	return true
}

// coversAll reports whether history h covers every version of s.
func coversAll(h map[string]int64, s State) bool { return coversAllOf(h, s.versions()) }

// checkSize makes sure a result can be stored and read back.
func checkSize(st State) error {
	if len(st.Siblings) > maxSiblings {
		return fmt.Errorf("record would hold %d concurrent versions, more than %d", len(st.Siblings)+1, maxSiblings+1)
	}
	// A string byte encodes to at most 6 bytes (\u00xx); a line adds at most
	// 128 bytes of keys, counter and flags. Encode only if the bound is
	// too high.
	bound := 0
	for _, v := range st.Siblings {
		bound += 128 + 6*(len(v.Instance)+len(v.Serialized))
	}
	if bound > maxSiblingsText && len(EncodeSiblings(st.Siblings)) > maxSiblingsText {
		return fmt.Errorf("record's concurrent versions would exceed %d bytes", maxSiblingsText)
	}
	return nil
}
