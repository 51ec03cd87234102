package merge

import (
	"strings"
	"testing"
)

// ver makes a live version.
func ver(inst string, c int64, ser string) Version {
	return Version{Instance: inst, Counter: c, Serialized: ser}
}

// deleted makes a soft-deleted version; it keeps its data, as in the
// original.
func deleted(inst string, c int64, ser string) Version {
	return Version{Instance: inst, Counter: c, Serialized: ser, Deleted: true}
}

// hard makes a hard-deleted version.
func hard(inst string, c int64) Version {
	return Version{Instance: inst, Counter: c, Serialized: "{}", Deleted: true, HardDeleted: true}
}

// hist makes a history from instance, counter pairs.
func hist(pairs ...any) map[string]int64 {
	h := map[string]int64{}
	for i := 0; i < len(pairs); i += 2 {
		h[pairs[i].(string)] = int64(pairs[i+1].(int))
	}
	return h
}

func state(head Version, sibs []Version, h map[string]int64) State {
	return State{Head: head, Siblings: sibs, History: h}
}

func ptr(s State) *State { return &s }

// sibs lists siblings.
func sibs(vs ...Version) []Version { return vs }

func TestMergeCases(t *testing.T) {
	score := func(n string) string { return `{"id":"r","score":` + n + `}` }
	tests := []struct {
		name     string
		local    *State
		incoming State
		rule     Rule
		want     State
		outcome  Outcome
		changed  bool
		dirty    bool
		// swapped, if set, is the outcome of merging the other way round
		// (local into incoming), which must give the same state.
		swapped Outcome
		err     string
	}{
		{
			name:     "new record",
			incoming: state(ver("a", 1, `{"x":1}`), nil, hist("a", 1)),
			want:     state(ver("a", 1, `{"x":1}`), nil, hist("a", 1)),
			outcome:  New, changed: true, dirty: true,
		},
		{
			name:     "new record with siblings",
			incoming: state(ver("b", 2, "y"), sibs(ver("a", 1, "x")), hist("a", 1, "b", 2)),
			want:     state(ver("b", 2, "y"), sibs(ver("a", 1, "x")), hist("a", 1, "b", 2)),
			outcome:  New, changed: true, dirty: true,
		},
		{
			name:     "already have: identical",
			local:    ptr(state(ver("a", 1, "x"), nil, hist("a", 1))),
			incoming: state(ver("a", 1, "x"), nil, hist("a", 1)),
			want:     state(ver("a", 1, "x"), nil, hist("a", 1)),
			outcome:  AlreadyHave,
			swapped:  AlreadyHave,
		},
		{
			name:     "already have: ancestor",
			local:    ptr(state(ver("a", 2, "y"), nil, hist("a", 2))),
			incoming: state(ver("a", 1, "x"), nil, hist("a", 1)),
			want:     state(ver("a", 2, "y"), nil, hist("a", 2)),
			outcome:  AlreadyHave,
			swapped:  FastForward,
		},
		{
			name:     "already have: superseded by another instance's edit",
			local:    ptr(state(ver("b", 1, "y"), nil, hist("a", 1, "b", 1))),
			incoming: state(ver("a", 1, "x"), nil, hist("a", 1)),
			want:     state(ver("b", 1, "y"), nil, hist("a", 1, "b", 1)),
			outcome:  AlreadyHave,
			swapped:  FastForward,
		},
		{
			name:     "already have: a side of a conflict the device holds",
			local:    ptr(state(ver("a", 2, "x"), sibs(ver("b", 1, "y")), hist("a", 2, "b", 1))),
			incoming: state(ver("b", 1, "y"), nil, hist("a", 1, "b", 1)),
			want:     state(ver("a", 2, "x"), sibs(ver("b", 1, "y")), hist("a", 2, "b", 1)),
			outcome:  AlreadyHave,
			swapped:  Conflict, // siblings appear on the device that had only b:1
		},
		{
			name:     "fast-forward",
			local:    ptr(state(ver("a", 1, "x"), nil, hist("a", 1))),
			incoming: state(ver("b", 1, "y"), nil, hist("a", 1, "b", 1)),
			want:     state(ver("b", 1, "y"), nil, hist("a", 1, "b", 1)),
			outcome:  FastForward, changed: true, dirty: true,
			swapped: AlreadyHave,
		},
		{
			// Fast-forward probe: the original Morango overwrites the
			// local B2 with the incoming B1; here histories only rise.
			name:     "fast-forward: probe, history joined not overwritten",
			local:    ptr(state(ver("A", 1, "store"), nil, hist("A", 1, "B", 2, "C", 3, "D", 4))),
			incoming: state(ver("F", 2, "buffer"), nil, hist("A", 3, "B", 1, "F", 2, "G", 3, "H", 4)),
			want:     state(ver("F", 2, "buffer"), nil, hist("A", 3, "B", 2, "C", 3, "D", 4, "F", 2, "G", 3, "H", 4)),
			outcome:  FastForward, changed: true, dirty: true,
			swapped: AlreadyHave,
		},
		{
			name:     "fast-forward: an edit resolves a conflict",
			local:    ptr(state(ver("a", 2, "x"), sibs(ver("b", 1, "y")), hist("a", 2, "b", 1))),
			incoming: state(ver("c", 1, "z"), nil, hist("a", 2, "b", 1, "c", 1)),
			want:     state(ver("c", 1, "z"), nil, hist("a", 2, "b", 1, "c", 1)),
			outcome:  FastForward, changed: true, dirty: true,
			swapped: AlreadyHave,
		},
		{
			name:     "fast-forward: un-delete after a soft delete",
			local:    ptr(state(deleted("a", 2, "x"), nil, hist("a", 2))),
			incoming: state(ver("b", 1, "x2"), nil, hist("a", 2, "b", 1)),
			want:     state(ver("b", 1, "x2"), nil, hist("a", 2, "b", 1)),
			outcome:  FastForward, changed: true, dirty: true,
			swapped: AlreadyHave,
		},
		{
			name:     "conflict: both sides edited",
			local:    ptr(state(ver("a", 2, "x"), nil, hist("a", 2))),
			incoming: state(ver("b", 1, "y"), nil, hist("a", 1, "b", 1)),
			want:     state(ver("a", 2, "x"), sibs(ver("b", 1, "y")), hist("a", 2, "b", 1)),
			outcome:  Conflict, changed: true, dirty: false, // a:2 stays the head
			swapped: Conflict,
		},
		{
			name:     "conflict: equal counters, greater instance wins",
			local:    ptr(state(ver("a", 2, "x"), nil, hist("a", 2, "o", 1))),
			incoming: state(ver("b", 2, "y"), nil, hist("b", 2, "o", 1)),
			want:     state(ver("b", 2, "y"), sibs(ver("a", 2, "x")), hist("a", 2, "b", 2, "o", 1)),
			outcome:  Conflict, changed: true, dirty: true,
			swapped: Conflict,
		},
		{
			// Conflict probe: the original Morango keeps the local text,
			// ORs the flags and mints (L,42). Here the deleted version
			// wins, the local one becomes a sibling, and nothing is minted.
			name:     "conflict: probe, incoming soft-deleted",
			local:    ptr(state(ver("C", 2, "store"), nil, hist("A", 1, "B", 1, "C", 2, "D", 3))),
			incoming: state(deleted("F", 2, "buffer"), nil, hist("A", 3, "F", 2, "G", 3, "H", 4)),
			want: state(deleted("F", 2, "buffer"), sibs(ver("C", 2, "store")),
				hist("A", 3, "B", 1, "C", 2, "D", 3, "F", 2, "G", 3, "H", 4)),
			outcome: Conflict, changed: true, dirty: true,
			swapped: Conflict,
		},
		{
			name:     "conflict: soft delete beats a concurrent edit with a higher counter",
			local:    ptr(state(deleted("a", 1, "x"), nil, hist("a", 1, "o", 1))),
			incoming: state(ver("b", 9, "y"), nil, hist("b", 9, "o", 1)),
			want:     state(deleted("a", 1, "x"), sibs(ver("b", 9, "y")), hist("a", 1, "b", 9, "o", 1)),
			outcome:  Conflict, changed: true,
			swapped: Conflict,
		},
		{
			name:     "hard delete vs edit: incoming hard delete wins",
			local:    ptr(state(ver("a", 2, "secret"), nil, hist("a", 2))),
			incoming: state(hard("b", 1), nil, hist("a", 1, "b", 1)),
			want:     state(hard("b", 1), nil, hist("a", 2, "b", 1)),
			outcome:  Conflict, changed: true, dirty: true,
			swapped: Conflict,
		},
		{
			name:     "hard delete vs edit: local hard delete wins, incoming text dropped",
			local:    ptr(state(hard("b", 1), nil, hist("a", 1, "b", 1))),
			incoming: state(ver("a", 2, "secret"), nil, hist("a", 2)),
			want:     state(hard("b", 1), nil, hist("a", 2, "b", 1)),
			outcome:  Conflict, changed: true, dirty: false,
			swapped: Conflict,
		},
		{
			name:     "hard delete vs conflict: siblings dropped",
			local:    ptr(state(ver("c", 3, "x"), sibs(deleted("a", 2, "y")), hist("a", 2, "c", 3))),
			incoming: state(hard("b", 1), nil, hist("a", 1, "b", 1)),
			want:     state(hard("b", 1), nil, hist("a", 2, "b", 1, "c", 3)),
			outcome:  Conflict, changed: true, dirty: true,
			swapped: Conflict,
		},
		{
			name:     "hard delete vs hard delete: both kept",
			local:    ptr(state(hard("a", 2), nil, hist("a", 2))),
			incoming: state(hard("b", 1), nil, hist("a", 1, "b", 1)),
			want:     state(hard("a", 2), sibs(hard("b", 1)), hist("a", 2, "b", 1)),
			outcome:  Conflict, changed: true,
			swapped: Conflict,
		},
		{
			// The re-creation (made by Edit on the hard-deleted state) is
			// the head; the hard deletion stays as a tombstone.
			name:     "re-creation after a hard delete",
			local:    ptr(state(hard("b", 1), nil, hist("a", 1, "b", 1))),
			incoming: state(ver("a", 3, "again"), sibs(hard("b", 1)), hist("a", 3, "b", 1)),
			want:     state(ver("a", 3, "again"), sibs(hard("b", 1)), hist("a", 3, "b", 1)),
			outcome:  FastForward, changed: true, dirty: true,
			swapped: AlreadyHave,
		},
		{
			// An edit made concurrently with the hard deletion is erased
			// by the tombstone the re-creation carries, on a device that
			// never saw the deletion itself.
			name:     "re-creation meets an edit concurrent with the hard delete",
			local:    ptr(state(ver("c", 1, "secret"), nil, hist("a", 1, "c", 1))),
			incoming: state(ver("a", 3, "again"), sibs(hard("b", 1)), hist("a", 3, "b", 1)),
			want:     state(ver("a", 3, "again"), sibs(hard("b", 1)), hist("a", 3, "b", 1, "c", 1)),
			outcome:  Conflict, changed: true, dirty: true,
			swapped: Conflict,
		},
		{
			name:     "re-creation meets a later edit of the re-created record",
			local:    ptr(state(ver("c", 1, "edited"), sibs(hard("b", 1)), hist("a", 3, "b", 1, "c", 1))),
			incoming: state(ver("a", 3, "again"), sibs(hard("b", 1)), hist("a", 3, "b", 1)),
			want:     state(ver("c", 1, "edited"), sibs(hard("b", 1)), hist("a", 3, "b", 1, "c", 1)),
			outcome:  AlreadyHave,
			swapped:  FastForward,
		},
		{
			name:     "hard delete of a re-created record supersedes its tombstone",
			local:    ptr(state(ver("a", 3, "again"), sibs(hard("b", 1)), hist("a", 3, "b", 1))),
			incoming: state(hard("c", 1), nil, hist("a", 3, "b", 1, "c", 1)),
			want:     state(hard("c", 1), nil, hist("a", 3, "b", 1, "c", 1)),
			outcome:  FastForward, changed: true, dirty: true,
			swapped: AlreadyHave,
		},
		{
			name:     "three-way conflict",
			local:    ptr(state(ver("a", 2, "x"), sibs(ver("b", 1, "y")), hist("a", 2, "b", 1, "o", 1))),
			incoming: state(ver("c", 4, "z"), nil, hist("c", 4, "o", 1)),
			want:     state(ver("c", 4, "z"), sibs(ver("a", 2, "x"), ver("b", 1, "y")), hist("a", 2, "b", 1, "c", 4, "o", 1)),
			outcome:  Conflict, changed: true, dirty: true,
			swapped: Conflict,
		},
		{
			name:     "column rule: prefer max",
			local:    ptr(state(ver("a", 5, score("10")), nil, hist("a", 5))),
			incoming: state(ver("b", 1, score("9.5e1")), nil, hist("b", 1)),
			rule:     ColumnRule("score", true),
			want:     state(ver("b", 1, score("9.5e1")), sibs(ver("a", 5, score("10"))), hist("a", 5, "b", 1)),
			outcome:  Conflict, changed: true, dirty: true,
			swapped: Conflict,
		},
		{
			name:     "column rule: prefer min",
			local:    ptr(state(ver("a", 5, score("10")), nil, hist("a", 5))),
			incoming: state(ver("b", 1, score("9.5e1")), nil, hist("b", 1)),
			rule:     ColumnRule("score", false),
			want:     state(ver("a", 5, score("10")), sibs(ver("b", 1, score("9.5e1"))), hist("a", 5, "b", 1)),
			outcome:  Conflict, changed: true,
			swapped: Conflict,
		},
		{
			name:     "column rule: deletion still ranks first",
			local:    ptr(state(deleted("a", 5, score("1")), nil, hist("a", 5))),
			incoming: state(ver("b", 1, score("100")), nil, hist("b", 1)),
			rule:     ColumnRule("score", true),
			want:     state(deleted("a", 5, score("1")), sibs(ver("b", 1, score("100"))), hist("a", 5, "b", 1)),
			outcome:  Conflict, changed: true,
			swapped: Conflict,
		},
		{
			name:     "local head re-chosen under the receiver's rule",
			local:    ptr(state(ver("a", 5, score("1")), sibs(ver("b", 1, score("2"))), hist("a", 5, "b", 1))),
			incoming: state(ver("a", 5, score("1")), nil, hist("a", 5)),
			rule:     ColumnRule("score", true),
			want:     state(ver("b", 1, score("2")), sibs(ver("a", 5, score("1"))), hist("a", 5, "b", 1)),
			outcome:  AlreadyHave, changed: true, dirty: true,
		},
		{
			name:     "same dot, different content: rejected",
			local:    ptr(state(ver("a", 1, "x"), nil, hist("a", 1))),
			incoming: state(ver("a", 1, "forged"), nil, hist("a", 1)),
			err:      "differs from the local version",
		},
		{
			name:     "same dot, different flags: rejected",
			local:    ptr(state(ver("b", 2, "y"), sibs(ver("a", 1, "x")), hist("a", 1, "b", 2))),
			incoming: state(deleted("a", 1, "x"), nil, hist("a", 1)),
			err:      "differs from the local version",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Merge(tt.local, tt.incoming, tt.rule)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !res.State.equal(tt.want) {
				t.Errorf("state\n got %v\nwant %v", res.State, tt.want)
			}
			if res.Outcome != tt.outcome || res.Changed != tt.changed || res.Dirty != tt.dirty {
				t.Errorf("outcome %v changed %v dirty %v, want %v %v %v", res.Outcome, res.Changed, res.Dirty, tt.outcome, tt.changed, tt.dirty)
			}
			if err := res.State.Validate(); err != nil {
				t.Errorf("result invalid: %v", err)
			}
			if tt.local == nil {
				return
			}
			back, err := Merge(&tt.incoming, *tt.local, tt.rule)
			if err != nil {
				t.Fatalf("other order: %v", err)
			}
			if tt.swapped != 0 {
				if !back.State.equal(res.State) {
					t.Errorf("other order gives\n%v\nnot\n%v", back.State, res.State)
				}
				if back.Outcome != tt.swapped {
					t.Errorf("other order: outcome %v, want %v", back.Outcome, tt.swapped)
				}
			}
		})
	}
}

// TestHardDeleteWipes checks that no text of a version concurrent with a
// hard deletion survives, in either order, whatever it held.
func TestHardDeleteWipes(t *testing.T) {
	base := Edit(nil, ver("o", 1, `{"name":"pupil"}`))
	edit := Edit(&base, ver("a", 1, `{"name":"secret"}`))
	conflict, err := Merge(&edit, Edit(&base, deleted("c", 1, `{"name":"also secret"}`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	erased := Edit(&base, Version{Instance: "b", Counter: 1, Serialized: `{"name":"ignored"}`, HardDeleted: true})
	if erased.Head.Serialized != "{}" {
		t.Fatalf("Edit kept data of a hard deletion: %q", erased.Head.Serialized)
	}
	for _, s := range []State{edit, conflict.State} {
		for _, r := range []Result{must(Merge(&s, erased, nil)), must(Merge(&erased, s, nil))} {
			if !r.State.Head.HardDeleted || r.State.Head.Serialized != "{}" || len(r.State.Siblings) != 0 {
				t.Errorf("hard deletion did not erase: %v", r.State)
			}
			if strings.Contains(EncodeSiblings(r.State.Siblings)+r.State.Head.Serialized, "secret") {
				t.Errorf("erased text survives: %v", r.State)
			}
		}
	}
}

func must(r Result, err error) Result {
	if err != nil {
		panic(err)
	}
	return r
}

// TestThreeWayAnyOrder folds three concurrent versions in every order.
func TestThreeWayAnyOrder(t *testing.T) {
	base := Edit(nil, ver("o", 1, "base"))
	states := []State{
		Edit(&base, ver("a", 2, "x")),
		Edit(&base, deleted("b", 1, "y")),
		Edit(&base, ver("c", 7, "z")),
	}
	want := state(deleted("b", 1, "y"), sibs(ver("a", 2, "x"), ver("c", 7, "z")), hist("a", 2, "b", 1, "c", 7, "o", 1))
	perms := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, p := range perms {
		s := states[p[0]]
		for _, i := range p[1:] {
			s = must(Merge(&s, states[i], nil)).State
		}
		if !s.equal(want) {
			t.Errorf("order %v: %v, want %v", p, s, want)
		}
		// Merging the pair first, then the third, gives the same.
		pair := must(Merge(&states[p[1]], states[p[2]], nil)).State
		if r := must(Merge(&states[p[0]], pair, nil)).State; !r.equal(want) {
			t.Errorf("order %v grouped right: %v", p, r)
		}
	}
}

// TestEditSupersedes checks that a local edit ends a conflict on every
// device it reaches.
func TestEditSupersedes(t *testing.T) {
	conflict := state(ver("a", 2, "x"), sibs(ver("b", 1, "y")), hist("a", 2, "b", 1))
	e := Edit(&conflict, ver("c", 1, "resolved"))
	want := state(ver("c", 1, "resolved"), nil, hist("a", 2, "b", 1, "c", 1))
	if !e.equal(want) {
		t.Fatalf("Edit = %v, want %v", e, want)
	}
	r := must(Merge(&conflict, e, nil))
	if !r.State.equal(want) || r.Outcome != FastForward {
		t.Errorf("merging the edit: %v %v", r.Outcome, r.State)
	}
	if n := Edit(nil, ver("a", 1, "x")); !n.equal(state(ver("a", 1, "x"), nil, hist("a", 1))) {
		t.Errorf("Edit(nil) = %v", n)
	}
	// Editing a hard-deleted record keeps the deletions as tombstones; a
	// hard deletion supersedes them.
	gone := state(hard("b", 1), sibs(hard("a", 2)), hist("a", 2, "b", 1))
	back := Edit(&gone, ver("c", 1, "again"))
	if !back.equal(state(ver("c", 1, "again"), sibs(hard("a", 2), hard("b", 1)), hist("a", 2, "b", 1, "c", 1))) {
		t.Errorf("re-creation = %v", back)
	}
	if again := Edit(&back, hard("c", 2)); !again.equal(state(hard("c", 2), nil, hist("a", 2, "b", 1, "c", 2))) {
		t.Errorf("hard delete after re-creation = %v", again)
	}
	// Edit does not share the previous history.
	e.History["z"] = 1
	if _, ok := conflict.History["z"]; ok {
		t.Error("Edit shares its history map with prev")
	}
}

// TestEditBeside checks an edit made while the head had not reached the
// app: it supersedes the versions the app could have shown, not the head,
// which stays as a concurrent version, and the devices that receive the
// result see a conflict rather than losing the head.
func TestEditBeside(t *testing.T) {
	score := func(n string) string { return `{"id":"r","score":` + n + `}` }
	// The device showed p (o:1); a:3 came in and waits; siblings b:1 (a
	// loser the user saw) and a tombstone t:1.
	origin := state(ver("a", 3, score("1")), nil, hist("a", 3, "o", 1))
	prev := state(ver("a", 3, score("1")), sibs(ver("b", 1, score("9")), hard("t", 1)), hist("a", 3, "b", 1, "o", 1, "t", 1))
	e := ver("c", 2, score("5"))
	for _, tc := range []struct {
		rule Rule
		want State
	}{
		// Default order: the greater counter, a:3, stays the head.
		{nil, state(ver("a", 3, score("1")), sibs(ver("c", 2, score("5")), hard("t", 1)), hist("a", 3, "b", 1, "c", 2, "o", 1, "t", 1))},
		{ColumnRule("score", true), state(e, sibs(ver("a", 3, score("1")), hard("t", 1)), hist("a", 3, "b", 1, "c", 2, "o", 1, "t", 1))},
	} {
		got := EditBeside(&prev, e, prev.Head, tc.rule)
		if !got.equal(tc.want) {
			t.Errorf("rule %v: EditBeside = %v, want %v", tc.rule, got, tc.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("rule %v: invalid result: %v", tc.rule, err)
		}
		// The device that made a:3 gets a conflict, not a fast-forward,
		// and both orders and groupings agree.
		r := must(Merge(&origin, got, tc.rule))
		if r.Outcome != Conflict || !sameVersions(r.State, got) {
			t.Errorf("rule %v: origin merging the edit: %v %v", tc.rule, r.Outcome, r.State)
		}
		back := must(Merge(&got, origin, tc.rule))
		if !back.State.equal(r.State) || back.Changed {
			t.Errorf("rule %v: the edit merging the origin: %v changed %v", tc.rule, back.State, back.Changed)
		}
		// A later edit anywhere ends the conflict.
		end := Edit(&r.State, ver("a", 4, score("2")))
		if m := must(Merge(&got, end, tc.rule)); m.Outcome != FastForward || !m.State.equal(end) {
			t.Errorf("rule %v: a later edit does not end the conflict: %v %v", tc.rule, m.Outcome, m.State)
		}
	}
	// Edit when there is nothing to keep: no previous state, a version
	// prev does not hold, a hard-deleted keep (a tombstone already), or a
	// hard deletion as the edit.
	if got := EditBeside(nil, e, ver("a", 3, score("1")), nil); !got.equal(Edit(nil, e)) {
		t.Errorf("EditBeside(nil) = %v", got)
	}
	if got := EditBeside(&prev, e, ver("z", 1, "{}"), nil); !got.equal(Edit(&prev, e)) {
		t.Errorf("EditBeside keeping a version prev lacks = %v", got)
	}
	if got := EditBeside(&prev, e, hard("t", 1), nil); !got.equal(Edit(&prev, e)) {
		t.Errorf("EditBeside keeping a tombstone = %v", got)
	}
	if got := EditBeside(&prev, hard("c", 2), prev.Head, nil); !got.equal(Edit(&prev, hard("c", 2))) {
		t.Errorf("EditBeside with a hard deletion = %v", got)
	}
	// A hard deletion made concurrently with the edit erases both.
	gone := Edit(&origin, hard("a", 4))
	if r := must(Merge(&gone, EditBeside(&prev, e, prev.Head, nil), nil)); !r.State.Head.HardDeleted || len(r.State.Conflicts()) != 0 {
		t.Errorf("a concurrent hard deletion leaves %v", r.State)
	}
}

// TestMergeDoesNotAlias checks that results own their memory.
func TestMergeDoesNotAlias(t *testing.T) {
	local := state(ver("a", 2, "x"), nil, hist("a", 2))
	in := state(ver("b", 2, "y"), sibs(ver("a", 1, "w")), hist("a", 1, "b", 2))
	for _, l := range []*State{nil, &local} {
		r := must(Merge(l, in, nil))
		r.State.History["zz"] = 9
		if len(r.State.Siblings) > 0 {
			r.State.Siblings[0].Serialized = "changed"
		}
		if _, ok := local.History["zz"]; ok || in.History["zz"] != 0 || in.Siblings[0].Serialized != "w" {
			t.Fatal("result shares memory with an input")
		}
	}
}

func TestValidate(t *testing.T) {
	good := state(ver("b", 2, "y"), sibs(ver("a", 1, "x")), hist("a", 1, "b", 2))
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		s    State
		want string
	}{
		{"zero", State{}, "empty instance"},
		{"zero counter", state(ver("a", 0, "x"), nil, hist("a", 1)), "counter must be positive"},
		{"negative counter", state(ver("a", -1, "x"), nil, hist("a", 1)), "counter must be positive"},
		{"head not covered", state(ver("a", 3, "x"), nil, hist("a", 2)), "does not cover"},
		{"sibling not covered", state(ver("b", 2, "y"), sibs(ver("a", 1, "x")), hist("b", 2)), "does not cover"},
		{"no history", state(ver("a", 1, "x"), nil, nil), "does not cover"},
		{"empty history instance", state(ver("a", 1, "x"), nil, hist("a", 1, "", 3)), `history entry ""`},
		{"zero history counter", state(ver("a", 1, "x"), nil, hist("a", 1, "b", 0)), `history entry "b"`},
		{"siblings unsorted", state(ver("c", 1, "z"), sibs(ver("b", 1, "y"), ver("a", 1, "x")), hist("a", 1, "b", 1, "c", 1)), "not sorted"},
		{"siblings repeated", state(ver("c", 1, "z"), sibs(ver("a", 1, "x"), ver("a", 1, "x")), hist("a", 1, "c", 1)), "not sorted"},
		{"sibling repeats head", state(ver("a", 1, "x"), sibs(ver("a", 1, "y")), hist("a", 1)), "repeats the head"},
		{"hard delete keeps data", state(Version{Instance: "a", Counter: 1, Serialized: "x", HardDeleted: true}, nil, hist("a", 1)), "keeps data"},
		{"invalid UTF-8", state(ver("a", 1, "\xff"), nil, hist("a", 1)), "UTF-8"},
		{"invalid UTF-8 instance", state(ver("\xff", 1, "x"), nil, hist("\xff", 1)), "UTF-8"},
	}
	for _, tt := range bad {
		err := tt.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		// Merge refuses the state on either side.
		if _, err := Merge(nil, tt.s, nil); err == nil || !strings.HasPrefix(err.Error(), "incoming state: ") {
			t.Errorf("%s: Merge(nil, bad) err = %v", tt.name, err)
		}
		if _, err := Merge(&tt.s, good, nil); err == nil || !strings.HasPrefix(err.Error(), "local state: ") {
			t.Errorf("%s: Merge(bad, good) err = %v", tt.name, err)
		}
	}
}

// TestMutualSupersession checks the error for two states that each claim
// to have superseded the other's versions, which no history allows.
func TestMutualSupersession(t *testing.T) {
	a := state(ver("a", 1, "x"), nil, hist("a", 1, "b", 1))
	b := state(ver("b", 1, "y"), nil, hist("a", 1, "b", 1))
	if _, err := Merge(&a, b, nil); err == nil || !strings.Contains(err.Error(), "supersede") {
		t.Fatalf("err = %v", err)
	}
}

func TestTooManySiblings(t *testing.T) {
	local := state(ver("z", 1, "z"), nil, hist("z", 1))
	in := State{History: map[string]int64{}}
	for i := range maxSiblings + 1 {
		v := ver("i"+strings.Repeat("0", 4-len(itoa(i)))+itoa(i), 1, "x")
		in.History[v.Instance] = 1
		if i == 0 {
			in.Head = v
		} else {
			in.Siblings = append(in.Siblings, v)
		}
	}
	if err := in.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(&local, in, nil); err == nil || !strings.Contains(err.Error(), "concurrent versions") {
		t.Fatalf("err = %v", err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{New: "new", AlreadyHave: "already have", FastForward: "fast-forward", Conflict: "conflict", 0: "Outcome(0)"} {
		if o.String() != want {
			t.Errorf("%d: %q, want %q", int(o), o.String(), want)
		}
	}
}

// TestRecreationAfterHardDelete checks the case the tombstone exists for:
// x is concurrent with a hard deletion h, and e re-creates the record after
// h on a device that never saw x. Every grouping gives the same state, with
// x erased.
func TestRecreationAfterHardDelete(t *testing.T) {
	base := Edit(nil, ver("o", 1, "base"))
	x := Edit(&base, ver("a", 1, "x"))  // device A edits
	h := Edit(&base, hard("b", 1))      // device B hard-deletes, concurrently
	e := Edit(&h, ver("c", 1, "again")) // device C sees the deletion, re-creates
	if !e.equal(state(ver("c", 1, "again"), sibs(hard("b", 1)), hist("b", 1, "c", 1, "o", 1))) {
		t.Fatalf("re-creation = %v", e)
	}
	if len(e.Conflicts()) != 0 {
		t.Errorf("a tombstone is listed as a conflict: %v", e.Conflicts())
	}
	want := state(ver("c", 1, "again"), sibs(hard("b", 1)), hist("a", 1, "b", 1, "c", 1, "o", 1))

	xh := must(Merge(&x, h, nil)).State // x meets h first
	he := must(Merge(&h, e, nil)).State // e reaches B first
	xe := must(Merge(&x, e, nil)).State // e reaches A, which never saw h
	for name, got := range map[string]State{
		"(x+h)+e": must(Merge(&xh, e, nil)).State,
		"x+(h+e)": must(Merge(&x, he, nil)).State,
		"(x+e)+h": must(Merge(&xe, h, nil)).State,
		"e+(x+h)": must(Merge(&e, xh, nil)).State,
	} {
		if !got.equal(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestTooLargeSiblings(t *testing.T) {
	big := strings.Repeat("x", maxSiblingsText/3+1)
	local := state(ver("a", 1, big), sibs(ver("b", 1, big)), hist("a", 1, "b", 1))
	in := state(ver("c", 1, big), sibs(ver("d", 1, big)), hist("c", 1, "d", 1))
	if _, err := Merge(&local, in, nil); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Fatalf("err = %v", err)
	}
	// Well under the limit merges.
	small := strings.Repeat("x", maxSiblingsText/8)
	local = state(ver("a", 1, small), nil, hist("a", 1))
	in = state(ver("c", 1, small), sibs(ver("d", 1, small)), hist("c", 1, "d", 1))
	if _, err := Merge(&local, in, nil); err != nil {
		t.Fatal(err)
	}
}

// EditBeside is Edit when keeping the waiting version would make the
// record larger than a store row may hold; Holds tells which it did.
func TestEditBesideTooLarge(t *testing.T) {
	big := `{"id":"r","body":"` + strings.Repeat(`\"`, maxSiblingsText/4+1) + `"}`
	prev := state(ver("a", 3, big), nil, hist("a", 3, "o", 1))
	e := ver("c", 4, `{"id":"r","body":"mine"}`)
	got := EditBeside(&prev, e, prev.Head, nil)
	if want := Edit(&prev, e); !got.equal(want) {
		t.Fatalf("EditBeside = %+v, want Edit's %+v", got, want)
	}
	if got.Holds(prev.Head) || !got.Holds(e) {
		t.Errorf("Holds: waiting %v, edit %v", got.Holds(prev.Head), got.Holds(e))
	}
	small := state(ver("a", 3, `{"id":"r"}`), nil, hist("a", 3, "o", 1))
	if st := EditBeside(&small, e, small.Head, nil); !st.Holds(small.Head) || !st.Holds(e) {
		t.Errorf("a small waiting version is not kept beside the edit: %+v", st)
	}
}
