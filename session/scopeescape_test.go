package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// Records a single-user tablet signs whose claimed partition is its own but
// which would put data outside its write scope, in the store or in the
// app's tables.

// learnerBundle writes recs as a bundle signed by h.home (single-user,
// write scope DS:user-rw:<learner> and DS:anonymous) and returns its path.
func (h *hostile) learnerBundle(name string, recs []bundle.Record) string {
	h.t.Helper()
	own := h.f.dataset + ":user-rw:" + h.f.learner
	p := h.path(name)
	writeBundle(h.t, p, bundle.Header{Profile: "facilitydata", SenderInstance: h.home.instance(), SenderCert: h.home.cert,
		Chain: h.chain(h.home), Filter: []string{own, h.f.dataset + ":anonymous"}}, h.home.ownCert(h.home.cert).PrivateKey, recs)
	return p
}

// cityBundle writes recs as a bundle signed by h.city (full facility).
func (h *hostile) cityBundle(name string, recs []bundle.Record) string {
	h.t.Helper()
	p := h.path(name)
	writeBundle(h.t, p, bundle.Header{Profile: "facilitydata", SenderInstance: h.city.instance(), SenderCert: h.city.cert,
		Chain: h.chain(h.city), Filter: []string{h.f.dataset}}, h.city.ownCert(h.city.cert).PrivateKey, recs)
	return p
}

// TestSeparatorInDataIsRefused: the check renders the partition template
// from the data and compares it by prefix with the write scope, but the
// app row gets the columns one by one. With dataset_id
// "DS:user-rw:<learner>" and user_id <other>, the template renders
// "DS:user-rw:<learner>:user-rw:<other>", under the signer's own prefix
// (likewise with dataset_id "DS:anonymous"), and the app row would be a
// contentlog of the other learner. A value holding the separator is
// refused.
func TestSeparatorInDataIsRefused(t *testing.T) {
	h := newHostile(t)
	f := h.f
	inst := h.home.instance()
	own := f.dataset + ":user-rw:" + f.learner
	var recs []bundle.Record
	for i, ds := range []string{own, f.dataset + ":anonymous"} {
		r := logRecord(ids.Random(), ds, f.other, fmt.Sprintf("forged%d", i), 1, inst, int64(10+i))
		r.Partition = own // the claimed partition is the signer's own
		recs = append(recs, r)
	}
	p := h.learnerBundle("colon.bundle", recs)
	for _, d := range []*device{h.fac, h.city} {
		r := d.mustImport(p)
		if n := d.count(`SELECT count(*) FROM contentlog WHERE user_id = ? AND content_id LIKE 'forged%'`, f.other); n != 0 {
			t.Errorf("%s: %d contentlog rows with user_id = the other learner, signed by the learner's tablet (refused %d, new %d)",
				d.name, n, r.Store.Refused, r.Store.New)
		}
		if r.Store.Refused != 2 {
			t.Errorf("%s: refused %d of 2", d.name, r.Store.Refused)
		}
		for _, x := range r.Store.Refusals {
			if !strings.Contains(x.Reason, `its data's dataset_id holds ":"`) {
				t.Errorf("%s: reason %q", d.name, x.Reason)
			}
		}
	}
}

// TestDeletedRecordCannotTakeAnID: a deleted (or hard-deleted) record
// carries no data to check, so its claimed partition must be one its
// model's template gives a row with its id. Otherwise the tablet signs a
// deleted facilityuser record with the id of a user this device does not
// hold yet, under its own partition; the facility then deletes (and sends
// on, as its own deletion) that user's content log, which lies in the other
// user's partition, and later refuses the real user ("id already used
// here").
func TestDeletedRecordCannotTakeAnID(t *testing.T) {
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			h := newHostile(t)
			f := h.f
			own := f.dataset + ":user-rw:" + f.learner
			cinst := h.city.instance()
			newUser, newLog := ids.Random(), ids.Random()

			// The new user's log reaches the facility before the user
			// (the user's tablet's bundle came first): it waits, pending.
			log := logRecord(newLog, f.dataset, newUser, "c7", 0.5, cinst, 100)
			h.fac.mustImport(h.cityBundle("log.bundle", []bundle.Record{log}))
			if h.fac.count(`SELECT count(*) FROM contentlog WHERE id = ?`, newLog) != 0 {
				t.Fatal("log written before its user")
			}

			// The learner's tablet claims the user id, deleted, in its own
			// partition.
			inst := h.home.instance()
			squat := bundle.Record{ModelUUID: newUser, Profile: "facilitydata", ModelName: "facilityuser", Partition: own,
				Serialized: "{}", Deleted: true, HardDeleted: hard, LastSavedInstance: inst, LastSavedCounter: 50,
				RMC: []bundle.Counter{{Instance: inst, Counter: 50}}}
			r := h.fac.mustImport(h.learnerBundle("squat.bundle", []bundle.Record{squat}))
			if r.Store.Refused != 1 || !strings.Contains(r.Store.Refusals[0].Reason, "partition is not one the model's template") {
				t.Errorf("squat import: refused %d, %+v", r.Store.Refused, r.Store.Refusals)
			}

			// The real user arrives from the city.
			user := bundle.Record{ModelUUID: newUser, Profile: "facilitydata", ModelName: "facilityuser",
				Partition:         f.dataset + ":user-ro:" + newUser,
				Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"username":"dana","full_name":""}`, newUser, f.dataset),
				LastSavedInstance: cinst, LastSavedCounter: 101, RMC: []bundle.Counter{{Instance: cinst, Counter: 101}}}
			r = h.fac.mustImport(h.cityBundle("user.bundle", []bundle.Record{user, log}))
			if r.Store.Refused != 0 {
				t.Errorf("user import: refused %d, %+v", r.Store.Refused, r.Store.Refusals)
			}
			if _, err := h.fac.db.Serialize(t.Context()); err != nil {
				t.Fatal(err)
			}

			if rec := h.fac.record(newLog); rec == nil || rec.Deleted {
				t.Errorf("the other user's log (partition %s) is deleted in the facility's store: %+v", log.Partition, rec)
			}
			if h.fac.count(`SELECT count(*) FROM facilityuser WHERE id = ?`, newUser) != 1 {
				rec := h.fac.record(newUser)
				t.Errorf("the real user never reaches the facility's app; its store record is the tablet's: %+v", rec)
			}
		})
	}
}
