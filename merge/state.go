package merge

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"unicode/utf8"
)

// Version is one version of a record: what one instance saved at one value
// of its counter. (Instance, Counter) is the version's dot; two versions
// with the same dot are the same version and have the same content.
type Version struct {
	// Instance is the id of the instance that saved the version.
	Instance string
	// Counter is that instance's counter when it saved the version (> 0).
	Counter int64
	// Serialized is the record's JSON object; "{}" for a hard deletion.
	Serialized string
	// Deleted marks a (soft) deletion.
	Deleted bool
	// HardDeleted marks a hard deletion: the data is erased everywhere.
	HardDeleted bool
}

// State is everything a device knows about one record: the version the app
// shows, the concurrent versions that lost to it, and the record's history.
//
// A valid State satisfies (see Validate): every version has a non-empty
// instance and a positive counter; Siblings are sorted by (Instance,
// Counter) and no two versions share a dot; History covers every version
// (History[v.Instance] >= v.Counter); hard-deleted versions have Serialized
// "{}". The zero State is not valid.
type State struct {
	// Head is the version the app shows: the greatest version under the
	// order of the record's model (see the package documentation), among
	// those not hard-deleted if there are any.
	Head Version
	// Siblings are the other versions, sorted by (Instance, Counter): the
	// concurrent versions that lost, kept for review, and beside a head that
	// is not hard-deleted, tombstones of the hard deletions it re-created
	// over (see Conflicts).
	Siblings []Version
	// History is the record's version vector: for each instance, the highest
	// counter of its versions this state includes or has superseded.
	History map[string]int64
}

// dot identifies a version.
type dot struct {
	instance string
	counter  int64
}

func (d dot) String() string { return fmt.Sprintf("%s:%d", d.instance, d.counter) }

func (v Version) dot() dot { return dot{v.Instance, v.Counter} }

// sameContent reports whether v and w carry the same data.
func (v Version) sameContent(w Version) bool {
	return v.Serialized == w.Serialized && v.Deleted == w.Deleted && v.HardDeleted == w.HardDeleted
}

// dotLess orders versions by (Instance, Counter), the order of Siblings.
func dotLess(v, w Version) bool {
	if v.Instance != w.Instance {
		return v.Instance < w.Instance
	}
	return v.Counter < w.Counter
}

// versions returns the head followed by the siblings, in a new slice.
func (s State) versions() []Version {
	vs := make([]Version, 0, 1+len(s.Siblings))
	vs = append(vs, s.Head)
	return append(vs, s.Siblings...)
}

// covers reports whether the history includes v: v is held or superseded.
func covers(h map[string]int64, v Version) bool { return h[v.Instance] >= v.Counter }

// checkVersion checks the rules every single version obeys.
func checkVersion(v Version) error {
	switch {
	case v.Instance == "":
		return fmt.Errorf("version %s: empty instance id", v.dot())
	case !utf8.ValidString(v.Instance):
		return fmt.Errorf("version %q: instance id is not valid UTF-8", v.Instance)
	case v.Counter < 1:
		return fmt.Errorf("version %s: counter must be positive", v.dot())
	case v.HardDeleted && v.Serialized != "{}":
		return fmt.Errorf("version %s: hard-deleted version keeps data", v.dot())
	case !utf8.ValidString(v.Serialized):
		return fmt.Errorf("version %s: serialized data is not valid UTF-8", v.dot())
	}
	return nil
}

// Validate reports whether s satisfies the State invariants. It does not
// check which version is the head: Merge chooses the head again under the
// receiver's rule.
func (s State) Validate() error {
	if err := checkVersion(s.Head); err != nil {
		return fmt.Errorf("head: %w", err)
	}
	if len(s.Siblings) > maxSiblings {
		return fmt.Errorf("%d siblings, more than %d", len(s.Siblings), maxSiblings)
	}
	for i, v := range s.Siblings {
		if err := checkVersion(v); err != nil {
			return fmt.Errorf("sibling: %w", err)
		}
		if i > 0 && !dotLess(s.Siblings[i-1], v) {
			return fmt.Errorf("siblings not sorted or repeated at %s", v.dot())
		}
		if v.dot() == s.Head.dot() {
			return fmt.Errorf("sibling %s repeats the head", v.dot())
		}
	}
	if inst, bad := badHistory(s.History); bad {
		return fmt.Errorf("history entry %q:%d: instance must be non-empty and counter positive", inst, s.History[inst])
	}
	for _, v := range s.versions() {
		if !covers(s.History, v) {
			return fmt.Errorf("history %s:%d does not cover version %s", v.Instance, s.History[v.Instance], v.dot())
		}
	}
	return nil
}

// badHistory returns the least instance whose history entry is invalid.
func badHistory(h map[string]int64) (string, bool) {
	var bad []string
	for inst, c := range h {
		if inst == "" || c < 1 {
			bad = append(bad, inst)
		}
	}
	if len(bad) == 0 {
		return "", false
	}
	sort.Strings(bad)
	return bad[0], true
}

// Edit returns the state after a local change: the app changed, deleted or
// hard-deleted the record and the change was serialized as v, stamped with
// this instance and a counter higher than any counter of this instance in
// prev.History. prev is nil for a new record.
//
// The edit supersedes every version prev holds, siblings included (the user
// saw the head), except hard deletions when v is not one: an edit of a
// hard-deleted record re-creates it, and the hard deletions stay as
// tombstones (siblings with no data) so that versions made concurrently
// with them are still erased wherever they arrive. A hard deletion
// supersedes everything; its Serialized is forced to "{}".
func Edit(prev *State, v Version) State {
	if v.HardDeleted {
		v.Serialized = "{}"
	}
	st := State{Head: v, History: map[string]int64{}}
	if prev != nil {
		maps.Copy(st.History, prev.History)
		if !v.HardDeleted {
			for _, w := range prev.versions() {
				if w.HardDeleted && w.dot() != v.dot() {
					st.Siblings = append(st.Siblings, w)
				}
			}
			sortVersions(st.Siblings)
		}
	}
	if st.History[v.Instance] < v.Counter {
		st.History[v.Instance] = v.Counter
	}
	return st
}

// EditBeside is Edit for a change made while the app did not show keep,
// a version prev holds (its head, when an incoming version waits to be
// written to the app). The user could not have seen keep, so v does not
// supersede it: the result holds v and keep as concurrent versions, the
// head chosen between them under rule, with the hard deletions Edit keeps
// as tombstones. Every other version of prev is superseded, and the
// history is prev.History with v's dot, as after Edit.
//
// It is Edit when prev is nil or does not hold keep, when keep has v's dot
// or is hard-deleted (Edit keeps it as a tombstone), when v is a hard
// deletion, which supersedes everything, and when keeping keep would make
// the record larger than a store row may hold (too many versions, or too
// much text): the caller can tell by Holds.
func EditBeside(prev *State, v Version, keep Version, rule Rule) State {
	st := Edit(prev, v)
	if prev == nil || v.HardDeleted || keep.HardDeleted || keep.dot() == v.dot() {
		return st
	}
	for _, w := range prev.versions() {
		if w.dot() == keep.dot() {
			if beside := arrange(append(st.versions(), w), st.History, rule); checkSize(beside) == nil {
				return beside
			}
			return st
		}
	}
	return st
}

// Holds reports whether s holds version v (the same dot and content), as
// its head or a sibling.
func (s State) Holds(v Version) bool {
	for _, w := range s.versions() {
		if w.dot() == v.dot() && w.sameContent(v) {
			return true
		}
	}
	return false
}

// Conflicts returns the siblings a user may review: those that carry data.
// Hard-deleted siblings are left out; beside a live head they are
// tombstones of the deletions the head re-created over.
func (s State) Conflicts() []Version {
	var c []Version
	for _, v := range s.Siblings {
		if !v.HardDeleted {
			c = append(c, v)
		}
	}
	return c
}

// equal reports whether s and t are the same state.
func (s State) equal(t State) bool {
	return s.Head == t.Head && slicesEqual(s.Siblings, t.Siblings) && maps.Equal(s.History, t.History)
}

func slicesEqual(a, b []Version) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sameVersions reports whether s and t hold the same set of versions,
// whichever is the head.
func sameVersions(s, t State) bool {
	if len(s.Siblings) != len(t.Siblings) {
		return false
	}
	vs, ts := s.versions(), t.versions()
	sort.Slice(vs, func(i, j int) bool { return dotLess(vs[i], vs[j]) })
	sort.Slice(ts, func(i, j int) bool { return dotLess(ts[i], ts[j]) })
	return slicesEqual(vs, ts)
}

// String formats a state for diagnostics: head, siblings and history.
func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "head %s", describe(s.Head))
	for _, v := range s.Siblings {
		fmt.Fprintf(&b, " sibling %s", describe(v))
	}
	insts := make([]string, 0, len(s.History))
	for i := range s.History {
		insts = append(insts, i)
	}
	sort.Strings(insts)
	b.WriteString(" history")
	for _, i := range insts {
		fmt.Fprintf(&b, " %s:%d", i, s.History[i])
	}
	return b.String()
}

func describe(v Version) string {
	flag := ""
	switch {
	case v.HardDeleted:
		flag = " hard-deleted"
	case v.Deleted:
		flag = " deleted"
	}
	return fmt.Sprintf("%s%s %s", v.dot(), flag, v.Serialized)
}
