package session

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// visit runs one exchange of d with the stick, signed with cert.
func (d *device) visit(stick, cert string) *ExchangeResult {
	d.t.Helper()
	r, err := Exchange(d.t.Context(), d.db, stick, ExchangeOptions{CertID: cert, Name: d.name})
	if err != nil {
		d.t.Fatalf("%s: exchange with %s: %v", d.name, cert[:8], err)
	}
	if r.Failed > 0 {
		for _, f := range r.Files {
			if f.Action == "failed" {
				d.t.Errorf("%s: %s failed: %s", d.name, f.File, f.Reason)
			}
		}
	}
	return r
}

// A tablet shared by two learners holds a single-user certificate for
// each, and runs every visit once for each certificate, one after the
// other, as the documentation says; then the stick goes to the facility.
// Each learner's work on the tablet reaches the facility, and each
// learner's work at the facility reaches the tablet, whichever
// certificate signed the tablet's last visit.
func TestSharedTabletVisitsOncePerLearner(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	home := newDevice(t, "home")
	first := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	second := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.other})

	round := func() {
		fac.visit(stick, fac.cert)
		home.visit(stick, first)
		home.visit(stick, second)
	}
	round()
	round()
	// Each learner works on the tablet, and each has new work at the
	// facility too.
	homeLogs := [2]string{ids.Random(), ids.Random()}
	facLogs := [2]string{ids.Random(), ids.Random()}
	for i, u := range []string{f.learner, f.other} {
		home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'tablet', 0.5)`, homeLogs[i], f.dataset, u)
		fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'school', 0.5)`, facLogs[i], f.dataset, u)
	}
	for range 4 {
		round()
	}
	fac.visit(stick, fac.cert)
	for i, who := range []string{"first", "second"} {
		if n := fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, homeLogs[i]); n != 1 {
			t.Errorf("facility: the %s learner's log made on the tablet has not arrived", who)
		}
		if n := home.count(`SELECT count(*) FROM contentlog WHERE id = ?`, facLogs[i]); n != 1 {
			t.Errorf("tablet: the %s learner's log made at the facility has not arrived", who)
		}
	}
	// The tablet holds exactly both learners' data and the shared data.
	want := fac.count(`SELECT count(*) FROM contentlog WHERE user_id IN (?, ?)`, f.learner, f.other)
	if n := home.count(`SELECT count(*) FROM contentlog`); n != want {
		t.Errorf("tablet: %d content logs, want both learners' %d", n, want)
	}
}

// Forgetting the shared tablet removes the manifests of both its
// certificates and the bundles written for each.
func TestForgetSharedTablet(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	home := newDevice(t, "home")
	first := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	second := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.other})
	home.visit(stick, first)
	home.visit(stick, second)
	fac.visit(stick, fac.cert)
	id, removed, err := Forget(nil, stick, "home")
	if err != nil {
		t.Fatal(err)
	}
	if id != home.instance() || len(removed) != 4 {
		t.Errorf("forget home: %s, removed %q; want its two manifests and the two bundles to them", id, removed)
	}
	names, err := bundle.OSFS{}.ReadDir(stick)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, manifestSuffix) && strings.HasPrefix(n, home.instance()) {
			t.Errorf("manifest %s of the forgotten tablet is still there", n)
		}
	}
}

// A learner's tablet becomes a teacher's: it gets a full-facility
// certificate and visits with it from then on. It already holds counters
// of the facility's instances for the learner's partitions, higher than
// those of records of other partitions it could not read; those records
// arrive all the same, and every device ends with the same app data. The
// learner's manifest, which the wider one covers, leaves the stick.
func TestTabletGetsWiderCertificate(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	laptop := newDevice(t, "laptop")
	grant(t, fac, laptop, "full-facility", map[string]string{"dataset_id": f.dataset})
	home := newDevice(t, "home")
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	devices := []*device{fac, laptop, home}
	round := func() {
		for _, d := range devices {
			d.visit(stick, d.cert)
		}
	}
	round()
	// The laptop writes the other learner's log, then the learner's; the
	// tablet writes the learner's too.
	otherLog, learnerLog, homeLog := ids.Random(), ids.Random(), ids.Random()
	laptop.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'l', 0.1)`, otherLog, f.dataset, f.other)
	laptop.visit(stick, laptop.cert)
	laptop.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'l', 0.2)`, learnerLog, f.dataset, f.learner)
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'h', 0.3)`, homeLog, f.dataset, f.learner)
	for range 3 {
		round()
	}
	if n := home.count(`SELECT count(*) FROM contentlog WHERE id IN (?, ?)`, otherLog, learnerLog); n != 1 {
		t.Fatalf("tablet: %d of the laptop's two logs, want the learner's only", n)
	}

	wide := grant(t, fac, home, "full-facility", map[string]string{"dataset_id": f.dataset})
	home.cert = wide
	for range 3 {
		round()
	}
	want := dump(t, fac.app, appTables)
	for _, d := range devices[1:] {
		if diff := diffStates(want, dump(t, d.app, appTables)); diff != "" {
			t.Errorf("%s's app data differs from the facility's:\n%s", d.name, diff)
		}
	}
	names, err := bundle.OSFS{}.ReadDir(stick)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == ManifestName(home.instance()) || strings.HasSuffix(n, "-to-"+home.instance()+bundleSuffix) {
			t.Errorf("%s: the learner's manifest of the tablet, or a bundle to it, is still on the stick", n)
		}
	}
}

// A tablet used by one learner is handed to a second: it gets a second
// single-user certificate. The second learner's history, made at the
// facility before the tablet could read it and at counters below those
// the tablet already holds of the facility for the first learner, arrives
// whole; the first learner's data stays and still goes out; neither
// learner's data reaches a device that may not read it.
func TestTabletHandedToSecondLearner(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	other := newDevice(t, "other") // the first learner's other device
	grant(t, fac, other, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	home := newDevice(t, "home")
	first := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	// The second learner's history, then the first learner's: the
	// facility's counters for the first are above the second's.
	var secondLogs []string
	for i := range 3 {
		id := ids.Random()
		secondLogs = append(secondLogs, id)
		fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, ?, 0.5)`, id, f.dataset, f.other, fmt.Sprint("s", i))
		fac.visit(stick, fac.cert)
	}
	fac.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'f1', 0.5)`, ids.Random(), f.dataset, f.learner)
	firstLog := ids.Random()
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'h1', 0.5)`, firstLog, f.dataset, f.learner)
	for range 3 {
		fac.visit(stick, fac.cert)
		home.visit(stick, first)
		other.visit(stick, other.cert)
	}
	if n := home.count(`SELECT count(*) FROM contentlog WHERE user_id = ?`, f.other); n != 0 {
		t.Fatalf("tablet: %d logs of the second learner before it may read them", n)
	}

	second := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.other})
	secondLog := ids.Random()
	home.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'h2', 0.5)`, secondLog, f.dataset, f.other)
	home.exec(`UPDATE contentlog SET progress = 0.9 WHERE id = ?`, firstLog)
	for range 3 {
		fac.visit(stick, fac.cert)
		home.visit(stick, first)
		home.visit(stick, second)
		other.visit(stick, other.cert)
	}
	fac.visit(stick, fac.cert)

	all := dump(t, fac.app, appTables)
	only := func(users ...string) map[string][]string {
		m := map[string][]string{}
		for tb, rows := range all {
			m[tb] = slices.DeleteFunc(slices.Clone(rows), func(r string) bool {
				switch tb {
				case "adminnote":
					return true
				case "facilityuser", "contentlog":
					return !slices.ContainsFunc(users, func(u string) bool {
						return strings.Contains(r, "'"+u+"'")
					})
				}
				return false
			})
		}
		return m
	}
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id IN (?, ?) OR (id = ? AND progress = 0.9)`, secondLog, firstLog, firstLog); n != 2 {
		t.Errorf("facility: %d of the tablet's two learners' logs (the first's edited)", n)
	}
	if diff := diffStates(only(f.learner, f.other), dump(t, home.app, appTables)); diff != "" {
		t.Errorf("tablet holds other rows than its two learners read:\n%s", diff)
	}
	if diff := diffStates(only(f.learner), dump(t, other.app, appTables)); diff != "" {
		t.Errorf("the first learner's other device holds other rows than its learner reads:\n%s", diff)
	}
}

// A tablet that holds a learner's certificate and then makes a root of its
// own (a school's first device) keeps the learner's files under the name
// the peers know: its visits with the learner's certificate write the
// manifest named after its instance alone.
func TestLearnerFilesKeepTheirNameAfterARoot(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	home := newDevice(t, "home")
	learner := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	home.visit(stick, learner)
	home.root()
	home.visit(stick, learner)
	names, err := bundle.OSFS{}.ReadDir(stick)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{ManifestName(home.instance())}) {
		t.Errorf("the stick holds %q, want the tablet's one manifest under its instance's name", names)
	}
}

// A device holds two overlapping certificates, a learner's and the whole
// facility's, and visits with each in turn. Whichever signs, it ends with
// the facility's data, and the learner's other device with exactly the
// learner's, the work made on the device with either certificate
// included.
func TestOverlappingCertificates(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	tablet := newDevice(t, "tablet")
	grant(t, fac, tablet, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	both := newDevice(t, "both")
	learner := grant(t, fac, both, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	wide := grant(t, fac, both, "full-facility", map[string]string{"dataset_id": f.dataset})
	logs := []string{ids.Random(), ids.Random(), ids.Random()}
	both.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'b1', 0.5)`, logs[0], f.dataset, f.learner)
	both.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 'b2', 0.5)`, logs[1], f.dataset, f.other)
	tablet.exec(`INSERT INTO contentlog (id, dataset_id, user_id, content_id, progress) VALUES (?, ?, ?, 't1', 0.5)`, logs[2], f.dataset, f.learner)
	for i := range 4 {
		fac.visit(stick, fac.cert)
		both.visit(stick, []string{learner, wide}[i%2])
		tablet.visit(stick, tablet.cert)
		both.visit(stick, []string{wide, learner}[i%2])
	}
	fac.visit(stick, fac.cert)
	if n := fac.count(`SELECT count(*) FROM contentlog WHERE id IN (?, ?, ?)`, logs[0], logs[1], logs[2]); n != 3 {
		t.Errorf("facility: %d of the 3 logs", n)
	}
	all := dump(t, fac.app, appTables)
	if diff := diffStates(all, dump(t, both.app, appTables)); diff != "" {
		t.Errorf("the device with both certificates differs from the facility:\n%s", diff)
	}
	want := map[string][]string{}
	for tb, rows := range all {
		want[tb] = slices.DeleteFunc(slices.Clone(rows), func(r string) bool {
			switch tb {
			case "adminnote":
				return true
			case "facilityuser", "contentlog":
				return !strings.Contains(r, "'"+f.learner+"'")
			}
			return false
		})
	}
	if diff := diffStates(want, dump(t, tablet.app, appTables)); diff != "" {
		t.Errorf("the learner's tablet holds other rows than the learner's:\n%s", diff)
	}
}

// On a tablet shared by two learners, the app hands a log of the first
// learner to the second (it edits user_id). The tablet may write both
// learners' partitions, but no certificate of its own may write both, and
// every importer checks the partition the data gives against the one
// signer's write scope: no bundle of the tablet's could carry that
// version. It must wait, as a change outside what the tablet may write
// does, instead of becoming a version that every peer refuses (which
// also keeps every peer from recording the tablet's counters).
func TestSharedTabletEditAcrossLearnersWaits(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	home := newDevice(t, "home")
	first := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	second := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.other})
	round := func() []*ExchangeResult {
		return []*ExchangeResult{fac.visit(stick, fac.cert), home.visit(stick, first), home.visit(stick, second)}
	}
	round()
	round()
	if n := home.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.learnerLog); n != 1 {
		t.Fatal("tablet: the first learner's log has not arrived")
	}
	home.exec(`UPDATE contentlog SET user_id = ? WHERE id = ?`, f.other, f.learnerLog)
	var refused int64
	for range 3 {
		for _, r := range round() {
			for _, fr := range r.Files {
				if fr.Import != nil && fr.Import.Store != nil {
					refused += fr.Import.Store.Refused
				}
			}
		}
	}
	if refused != 0 {
		t.Errorf("%d records refused: the tablet made a version no certificate of its own may sign", refused)
	}
	if a, b := fac.record(f.learnerLog), home.record(f.learnerLog); a == nil || b == nil || a.Serialized != b.Serialized {
		t.Errorf("the log's record differs:\n  facility: %+v\n  tablet:   %+v", a, b)
	}
	if n := home.count(`SELECT count(*) FROM morango_dirty WHERE id = ? AND error LIKE 'this device may not write%'`, f.learnerLog); n != 1 {
		var why string
		home.app.QueryRow(`SELECT error FROM morango_dirty WHERE id = ?`, f.learnerLog).Scan(&why)
		t.Errorf("tablet: the edit does not wait with its reason (%q)", why)
	}
}

// The facility hands a learner's log to the other learner while the
// learner's tablet edits it: the tablet holds both versions. Resolving
// the conflict there by keeping the facility's would make a version of
// the tablet's whose data lies in the other learner's partition, which no
// certificate of the tablet may sign with the log's own: every peer would
// refuse it. Resolve refuses it, as it refuses a decision on a record the
// tablet may not write.
func TestResolveKeepingDataNoCertificateMaySign(t *testing.T) {
	stick := t.TempDir()
	fac := newDevice(t, "facility")
	fac.root()
	f := seedFacility(fac)
	home := newDevice(t, "home")
	first := grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.other})
	for range 2 {
		fac.visit(stick, fac.cert)
		home.visit(stick, first)
	}
	fac.exec(`UPDATE contentlog SET user_id = ? WHERE id = ?`, f.other, f.learnerLog)
	home.exec(`UPDATE contentlog SET progress = 0.6 WHERE id = ?`, f.learnerLog)
	for range 2 {
		fac.visit(stick, fac.cert)
		home.visit(stick, first)
	}
	var inst string
	var counter int64
	if err := fac.app.QueryRow(`SELECT h.instance_id, h.counter FROM morango_recordmaxcounter h
		WHERE h.store_model_id = ? AND h.instance_id = (SELECT id FROM morango_instanceid WHERE current)`, f.learnerLog).Scan(&inst, &counter); err != nil {
		t.Fatal(err)
	}
	if r := home.record(f.learnerLog); r == nil || r.Conflicting == "" && !strings.Contains(r.Serialized, f.other) {
		t.Fatalf("tablet: the facility's move of the log has not arrived: %+v", r)
	}
	_, err := home.db.Resolve(t.Context(), f.learnerLog, fmt.Sprintf("%s:%d", inst, counter))
	if err == nil {
		home.visit(stick, first)
		for _, fr := range fac.visit(stick, fac.cert).Files {
			if fr.Import != nil && fr.Import.Store.Refused > 0 {
				t.Errorf("facility refused %d record(s) of the tablet's: %+v", fr.Import.Store.Refused, fr.Import.Store)
			}
		}
		t.Fatal("resolve kept a version whose data lies where no certificate of the tablet that may write the log may write")
	}
}
