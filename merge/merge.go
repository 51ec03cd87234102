package merge

import (
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
	// FastForward: the result is the incoming state's single version and
	// the incoming history covers every local version: the local state was
	// superseded.
	FastForward
	// Conflict: anything else. Concurrent versions met (the result keeps
	// versions of both sides, or a hard deletion erased a concurrent
	// version), or the incoming state brought siblings the device had not
	// shown.
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
// record the device does not have) and orders the result under rule (nil
// for the default rule). The join is commutative, associative and
// idempotent except in the case the package documentation describes (a
// re-creation after a hard deletion), so devices that have merged the same
// states hold the same state whatever the order of arrival. Merge never
// makes a new version.
//
// Merge returns an error, and no result, if either state is invalid (see
// State.Validate), if the two hold the same dot with different content
// (only a bug or a forged file can do that), or if the result would hold
// more concurrent versions than a store row can keep.
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
	case len(st.Siblings) == 0 && sameVersions(st, incoming) && coversAll(incoming.History, *local):
		res.Outcome = FastForward
	default:
		res.Outcome = Conflict
	}
	return res, nil
}

// join computes the join of two valid states: a version of one side stays
// if the other side holds it too or has not seen it; the histories join
// pointwise; then arrange applies hard deletion and the order.
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
	kept := make([]Version, 0, len(as)+len(bs))
	for _, v := range as {
		w, ok := inB[v.dot()]
		if ok && !v.sameContent(w) {
			return State{}, fmt.Errorf("incoming version %s differs from the local version with the same id", v.dot())
		}
		if ok || !covers(b.History, v) {
			kept = append(kept, v)
		}
	}
	for _, v := range bs {
		if _, ok := inA[v.dot()]; !ok && !covers(a.History, v) {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		// Each side has seen and dropped every version of the other. Only a
		// hard deletion that erased a version the other side kept, after a
		// re-creation superseded it there, leads here (see the package
		// documentation). Keep both sides; arrange lets hard deletion win.
		kept = append(as, bs...)
	}
	h := maps.Clone(a.History)
	for inst, c := range b.History {
		if h[inst] < c {
			h[inst] = c
		}
	}
	return arrange(kept, h, rule), nil
}

// coversAll reports whether history h covers every version of s.
func coversAll(h map[string]int64, s State) bool {
	for _, v := range s.versions() {
		if !covers(h, v) {
			return false
		}
	}
	return true
}

// checkSize makes sure a result can be stored and read back.
func checkSize(st State) error {
	if len(st.Siblings) > maxSiblings {
		return fmt.Errorf("record would hold %d concurrent versions, more than %d", len(st.Siblings)+1, maxSiblings+1)
	}
	if len(st.Siblings) > 0 && len(EncodeSiblings(st.Siblings)) > maxSiblingsText {
		return fmt.Errorf("record's concurrent versions would exceed %d bytes", maxSiblingsText)
	}
	return nil
}
