package session

import (
	"strings"
	"testing"

	"github.com/morango-sync/morango/store"
)

// TestEditOfRowWaitingForIncomingVersionKeepsIt checks that an app edit of
// a row whose incoming version waits does not silently supersede that
// version. Facility moves a learner's content log to another learner; the
// tablet may read the log's partition (fixed at creation) but not the new
// learner, so the moved version waits on the tablet (its user does not
// exist there) and the app keeps showing the log before the move. The
// learner then records progress on that row. The tablet's record must
// hold both Facility's move and the learner's progress, one as the head
// and one as a conflict, and Facility must not lose its move; the two
// end with the same record (Facility takes its own move back from the
// tablet beside the learner's edit: TestRelayedVersionOutsideSignerScopeMergedWhereKnown).
func TestEditOfRowWaitingForIncomingVersionKeepsIt(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	home.sendTo(fac, dir, true)

	fac.exec(`UPDATE contentlog SET user_id = ? WHERE id = ?`, f.other, f.learnerLog)
	fac.sendTo(home, dir, true)
	if r := home.record(f.learnerLog); r == nil || !r.Dirty || !strings.Contains(r.Serialized, f.other) {
		t.Fatalf("the move does not wait on the tablet: %+v", r)
	}
	// The learner works on what the tablet shows.
	home.exec(`UPDATE contentlog SET progress = 0.9 WHERE id = ?`, f.learnerLog)
	for range 2 {
		home.sendTo(fac, dir, true)
		fac.sendTo(home, dir, true)
	}
	hr := home.record(f.learnerLog)
	if both := hr.Serialized + hr.Conflicting; hr.Conflicting == "" || !strings.Contains(both, f.other) || !strings.Contains(both, `0.9`) {
		t.Fatalf("the tablet's record lost the move or the progress: %+v", hr)
	}
	fr := fac.record(f.learnerLog)
	if !strings.Contains(fr.Serialized+fr.Conflicting, f.other) {
		t.Fatalf("Facility's move was superseded by an edit of a row the tablet never updated: facility holds %+v", fr)
	}
	if fr.Serialized != hr.Serialized || fr.Conflicting != hr.Conflicting {
		t.Fatalf("facility and tablet differ:\n facility: %+v\n tablet:   %+v", fr, hr)
	}
}

// TestEditOfRowWaitingForIncomingVersionConverges checks that an edit of
// a row whose incoming version waits (here the tablet's app refuses the
// engine's write for a while) keeps that version as a conflict on every
// device: Facility and the tablet end with the same record, holding
// Facility's edit and the learner's, and Facility lists the conflict.
func TestEditOfRowWaitingForIncomingVersionConverges(t *testing.T) {
	fac, home, f, dir := facilityEditWaits(t)
	home.exec(`UPDATE contentlog SET progress = 0.9 WHERE id = ?`, f.learnerLog)
	home.exec(`DROP TRIGGER busy`)
	for range 2 {
		if _, r := home.sendTo(fac, dir, true); r != nil {
			for _, x := range r.Store.Refusals {
				t.Errorf("facility refused %s: %s", x.ID, x.Reason)
			}
		}
		fac.sendTo(home, dir, true)
	}
	// The app no longer refuses: the waiting head, if it is still the
	// head, is written.
	if _, _, err := home.db.RetryPending(t.Context()); err != nil {
		t.Fatal(err)
	}
	fr, hr := fac.record(f.learnerLog), home.record(f.learnerLog)
	if fr.Serialized != hr.Serialized || fr.Conflicting != hr.Conflicting || hr.Dirty {
		t.Fatalf("facility and tablet differ:\n facility: %+v\n tablet:   %+v", fr, hr)
	}
	if both := fr.Serialized + fr.Conflicting; !strings.Contains(both, `c2`) || !strings.Contains(both, `0.9`) {
		t.Fatalf("the record lost Facility's edit or the learner's: %+v", fr)
	}
	for _, d := range []*device{fac, home} {
		if n := d.count(`SELECT count(*) FROM contentlog WHERE id = ? AND content_id = ? AND progress = ?`, f.learnerLog,
			map[bool]string{true: "c2", false: "c1"}[strings.Contains(fr.Serialized, `"c2"`)],
			map[bool]float64{true: 0.25, false: 0.9}[strings.Contains(fr.Serialized, `"c2"`)]); n != 1 {
			t.Errorf("%s's app does not show the head %s", d.name, fr.Serialized)
		}
	}
	conflicts := conflictsIn(t, fac, "contentlog")
	if len(conflicts) != 1 || conflicts[0].ID != f.learnerLog || len(conflicts[0].Lost) != 1 {
		t.Fatalf("facility lists conflicts %+v, want the log's", conflicts)
	}
}

// TestDeleteOfRowWaitingForIncomingVersionKeepsIt: the same when the app
// deletes the row instead of editing it. The deletion wins (deleted ranks
// above live), but Facility's edit, which the tablet never showed, stays a
// conflict on every device instead of vanishing.
func TestDeleteOfRowWaitingForIncomingVersionKeepsIt(t *testing.T) {
	fac, home, f, dir := facilityEditWaits(t)
	home.exec(`DELETE FROM contentlog WHERE id = ?`, f.learnerLog)
	home.exec(`DROP TRIGGER busy`)
	for range 2 {
		home.sendTo(fac, dir, true)
		fac.sendTo(home, dir, true)
	}
	fr, hr := fac.record(f.learnerLog), home.record(f.learnerLog)
	if fr.Serialized != hr.Serialized || fr.Conflicting != hr.Conflicting || fr.Deleted != hr.Deleted || hr.Dirty {
		t.Fatalf("facility and tablet differ:\n facility: %+v\n tablet:   %+v", fr, hr)
	}
	if !fr.Deleted || !strings.Contains(fr.Conflicting, `c2`) {
		t.Fatalf("want the deletion as head and Facility's edit as a conflict: %+v", fr)
	}
	for _, d := range []*device{fac, home} {
		if n := d.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.learnerLog); n != 0 {
			t.Errorf("%s's app still shows the deleted log", d.name)
		}
	}
	conflicts := conflictsIn(t, fac, "contentlog")
	if len(conflicts) != 1 || conflicts[0].ID != f.learnerLog {
		t.Fatalf("facility lists conflicts %+v, want the log's", conflicts)
	}
}

// facilityEditWaits is learnerTablet after an exchange both ways, where
// Facility's edit of the learner's log (content c2) waits on the tablet:
// the tablet's app refuses the engine's updates of contentlog until the
// test drops its trigger "busy".
func facilityEditWaits(t *testing.T) (fac, home *device, f facilityData, dir string) {
	t.Helper()
	fac, home, f, dir = learnerTablet(t)
	home.sendTo(fac, dir, true)
	home.exec(`CREATE TRIGGER busy BEFORE UPDATE ON contentlog WHEN EXISTS (SELECT 1 FROM morango_applying)
		BEGIN SELECT RAISE(ABORT, 'the log is open'); END`)
	fac.exec(`UPDATE contentlog SET content_id = 'c2' WHERE id = ?`, f.learnerLog)
	fac.sendTo(home, dir, true)
	if r := home.record(f.learnerLog); r == nil || !r.Dirty || !strings.Contains(r.Serialized, `"c2"`) {
		t.Fatalf("Facility's edit does not wait on the tablet: %+v", r)
	}
	return fac, home, f, dir
}

// conflictsIn lists the conflicts of model on d.
func conflictsIn(t *testing.T, d *device, model string) []store.Conflict {
	t.Helper()
	var conflicts []store.Conflict
	if err := d.db.Conflicts(t.Context(), model, func(c store.Conflict) error {
		conflicts = append(conflicts, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return conflicts
}
