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

// An edit of a row the store already holds that puts the separator in a
// partition column stays out of the store, with the reason, as a new row
// does: every importer would refuse the new version.
func TestEditWithSeparatorStaysLocal(t *testing.T) {
	h := newHostile(t)
	f := h.f
	h.fac.exec(`UPDATE adminnote SET dataset_id = dataset_id || ':x' WHERE id = ?`, f.note)
	if _, err := h.fac.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rec := h.fac.record(f.note); strings.Contains(rec.Serialized, f.dataset+`:x`) {
		t.Errorf("the edited row with ':' in dataset_id reached the store: %s", rec.Serialized)
	}
	if n := h.fac.count(`SELECT count(*) FROM morango_dirty WHERE id = ? AND error LIKE '%holds ":"%'`, f.note); n != 1 {
		t.Errorf("the edited row does not wait with the reason (%d)", n)
	}
	_, r := h.fac.sendTo(h.city, h.dir, true)
	if r != nil && r.Store.Refused != 0 {
		t.Errorf("city refuses %d records the facility's engine produced: %+v", r.Store.Refused, r.Store.Refusals)
	}
}

// The same on the learner's tablet: its own log edited to dataset_id
// "D:user-rw:<learner>" and user_id the other learner (the shape
// TestSeparatorInDataIsRefused refuses on import) gets no new version.
func TestEditIntoOtherLearnerStaysLocal(t *testing.T) {
	h := newHostile(t)
	f := h.f
	h.home.mustImport(func() string {
		p := h.path("to-home.bundle")
		m := h.path("home.manifest")
		h.home.manifest(m)
		h.fac.export(p, m)
		return p
	}())
	h.home.exec(`UPDATE contentlog SET dataset_id = ?, user_id = ? WHERE id = ?`, f.dataset+":user-rw:"+f.learner, f.other, f.learnerLog)
	if _, err := h.home.db.Serialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rec := h.home.record(f.learnerLog); rec != nil && strings.Contains(rec.Serialized, f.other) {
		t.Errorf("serialization accepted an edit whose dataset_id holds ':' (record %s: %s)", rec.Partition, rec.Serialized)
	}
}

// Templates where ${id} sits next to a column, or before a literal a
// column's value also holds ("${dataset_id}:${id}.${ext}" with ext
// "tar.gz", "${dataset_id}:${kind}${id}"): the records the engine
// serializes fit their template on the importing device.
func TestRecordsOfIDTemplatesFit(t *testing.T) {
	const schema = `CREATE TABLE attachment (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, ext TEXT NOT NULL);
CREATE TABLE tagged (id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, kind TEXT NOT NULL);`
	const models = `{"name": "attachment", "table": "attachment", "partition": "${dataset_id}:${id}.${ext}"},
{"name": "tagged", "table": "tagged", "partition": "${dataset_id}:${kind}${id}"},`
	fac := newAppDevice(t, "facility", schema, models)
	fac.root()
	f := seedFacility(fac)
	city := newAppDevice(t, "city", schema, models)
	grant(t, fac, city, "full-facility", map[string]string{"dataset_id": f.dataset})
	a, g := ids.Random(), ids.Random()
	fac.exec(`INSERT INTO attachment (id, dataset_id, ext) VALUES (?, ?, 'tar.gz')`, a, f.dataset)
	fac.exec(`INSERT INTO tagged (id, dataset_id, kind) VALUES (?, ?, 'k')`, g, f.dataset)
	_, r := fac.sendTo(city, t.TempDir(), false)
	if r.Store.Refused != 0 {
		t.Errorf("city refuses %d records the facility serialized: %+v", r.Store.Refused, r.Store.Refusals)
	}
	for _, id := range []string{a, g} {
		if city.record(id) == nil {
			t.Errorf("record %s (partition %s) did not reach the city", id, fac.record(id).Partition)
		}
	}
}
