package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/merge"
)

// A learner's tablet edits its own content log while Facility,
// concurrently, moves that log to another learner (a full-facility device
// may write there; the record keeps its partition, user-rw:learner, as
// partitions are fixed at creation). The tablet imports Facility's move
// first: its record now holds its own edit and Facility's move. When the
// tablet sends the record back, Facility's own move is in it, with data
// outside the tablet's write scope: Facility holds that very version, so
// it brings no data, and the record is merged (it was refused, and the two
// devices never converged). A device that does not hold the move yet
// refuses the record until it has it from a device that may write it.
func TestRelayedVersionOutsideSignerScopeMergedWhereKnown(t *testing.T) {
	fac, home, f, dir := learnerTablet(t)
	home.sendTo(fac, dir, true)

	// Concurrent: the tablet records progress, Facility moves the log.
	home.exec(`UPDATE contentlog SET progress = 0.5 WHERE id = ?`, f.learnerLog)
	fac.exec(`UPDATE contentlog SET user_id = ? WHERE id = ?`, f.other, f.learnerLog)

	// The tablet hears of the move first, then both exchange a few times.
	fac.sendTo(home, dir, true)
	var refused int64
	for range 3 {
		if _, r := home.sendTo(fac, dir, true); r != nil {
			refused += r.Store.Refused
			for _, x := range r.Store.Refusals {
				t.Logf("facility refused %s: %s", x.ID, x.Reason)
			}
		}
		fac.sendTo(home, dir, true)
	}
	hist := func(d *device) string {
		var h string
		if err := d.app.QueryRow(`SELECT group_concat(instance_id || ':' || counter) FROM
			(SELECT instance_id, counter FROM morango_recordmaxcounter WHERE store_model_id = ? ORDER BY instance_id)`, f.learnerLog).Scan(&h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	fr, hr := fac.record(f.learnerLog), home.record(f.learnerLog)
	if refused > 0 || fr.Serialized != hr.Serialized || fr.Conflicting != hr.Conflicting || hist(fac) != hist(home) {
		t.Fatalf("facility and tablet never converge on the log (facility refused %d records):\n facility: %+v history %s\n tablet:   %+v history %s",
			refused, fr, hist(fac), hr, hist(home))
	}
}

// A learner's tablet cannot use the rule above to slip data outside its
// write scope in as another device's version: a version it relays with
// data outside its scope is refused where it is not known (a counter the
// other device never used) and where it differs from the version known
// under the same counter.
func TestForgedRelayedVersionIsRefused(t *testing.T) {
	h := newHostile(t)
	f := h.f
	inst, cinst := h.home.instance(), h.city.instance()
	log := logRecord(ids.Random(), f.dataset, f.learner, "c9", 0.1, cinst, 100)
	for _, d := range []*device{h.fac, h.city} {
		if r := d.mustImport(h.cityBundle("log-"+d.name+".bundle", []bundle.Record{log})); r.Store.New != 1 {
			t.Fatalf("%s: the city's log: %+v", d.name, r.Store)
		}
	}
	forged := func(counter int64) bundle.Record {
		r := logRecord(log.ModelUUID, f.dataset, f.learner, "c9", 0.9, inst, 60)
		moved := fmt.Sprintf(`{"id":%q,"dataset_id":%q,"user_id":%q,"content_id":"c9","progress":0.1}`, log.ModelUUID, f.dataset, f.other)
		r.ConflictingSerializedData = merge.EncodeSiblings([]merge.Version{{Instance: cinst, Counter: counter, Serialized: moved}})
		r.RMC = []bundle.Counter{{Instance: cinst, Counter: counter}, {Instance: inst, Counter: 60}}
		return r
	}
	for _, c := range []struct {
		name    string
		counter int64
	}{{"a counter the city never used", 150}, {"the city's counter of another version", 100}} {
		p := h.learnerBundle(fmt.Sprintf("forged-%d.bundle", c.counter), []bundle.Record{forged(c.counter)})
		for _, d := range []*device{h.fac, h.city} {
			r := d.mustImport(p)
			if r.Store.Refused != 1 {
				t.Errorf("%s, %s: refused %d of 1: %+v", c.name, d.name, r.Store.Refused, r.Store)
			}
			if n := d.count(`SELECT count(*) FROM contentlog WHERE id = ? AND user_id = ?`, log.ModelUUID, f.other); n != 0 {
				t.Errorf("%s, %s: the forged version reached the app", c.name, d.name)
			}
			if rec := d.record(log.ModelUUID); strings.Contains(rec.Serialized+rec.Conflicting, f.other) {
				t.Errorf("%s, %s: the forged version reached the store: %+v", c.name, d.name, rec)
			}
		}
	}
}
