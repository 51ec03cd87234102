package session

import (
	"slices"
	"strings"
	"testing"

	"github.com/morango-sync/morango/ids"
)

// A learner's tablet and the learner's laptop meet on one stick; the
// laptop and the facility on another. The laptop relays the learner's
// logs both ways: the tablet's to the facility, the facility's to the
// tablet, though it may write nothing else the tablet reads. When the
// tablet later meets the facility, it gets the rest (the facility's shared
// data and its user row), and nothing the counters the relay gave it
// claim is skipped: the tablet ends with exactly what its certificate
// reads, as the facility has it.
func TestRelayByAnotherLearnerDevice(t *testing.T) {
	home1, hub := t.TempDir(), t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	laptop := newDevice(t, "laptop")
	grant(t, fac, laptop, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	home := newDevice(t, "home")
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	for range 2 {
		fac.visit(hub, fac.cert)
		laptop.visit(hub, laptop.cert)
	}
	homeLog, facLog, otherLog := ids.Random(), ids.Random(), ids.Random()
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'h', 0.3)`, homeLog, f.dataset, f.learner)
	fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'other', 0.1)`, otherLog, f.dataset, f.other)
	fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'f', 0.2)`, facLog, f.dataset, f.learner)
	fac.exec(`UPDATE classroom SET name = 'Class 5' WHERE id = ?`, f.classroom)
	for range 3 {
		home.visit(home1, home.cert)
		laptop.visit(home1, laptop.cert)
		laptop.visit(hub, laptop.cert)
		fac.visit(hub, fac.cert)
		laptop.visit(hub, laptop.cert)
		laptop.visit(home1, laptop.cert)
		home.visit(home1, home.cert)
	}
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, homeLog); n != 1 {
		t.Errorf("facility: the tablet's log has not arrived through the laptop")
	}
	if n := home.count(`SELECT count(*) FROM morango_store WHERE id = ?`, facLog); n != 1 {
		t.Errorf("tablet: the facility's log of the learner has not arrived through the laptop")
	}
	// The tablet meets the facility.
	for range 2 {
		home.visit(hub, home.cert)
		fac.visit(hub, fac.cert)
	}
	home.visit(hub, home.cert)
	// What the learner's certificate reads, as the facility has it.
	want := dump(t, fac.app, appTables)
	keep := func(tb string, pred func(string) bool) {
		want[tb] = slices.DeleteFunc(want[tb], func(r string) bool { return !pred(r) })
	}
	keep("facilityuser", func(r string) bool { return strings.HasPrefix(r, "'"+f.learner+"'") })
	keep("contentlog", func(r string) bool { return strings.Contains(r, "'"+f.learner+"'") })
	keep("adminnote", func(string) bool { return false })
	for _, d := range []*device{home, laptop} {
		if diff := diffStates(want, dump(t, d.app, appTables)); diff != "" {
			t.Errorf("%s holds other rows than its certificate reads at the facility:\n%s", d.name, diff)
		}
	}
}
