package session

import (
	"testing"

	"github.com/morango-sync/morango/bundle"
)

// A hard deletion erases a record's data and its app row everywhere; the
// engine's own (store.serialize) is deleted as well. The learner's tablet
// signs one of its own log that says it is erased but not deleted. City
// must not end with the record erased in its store while the app row
// stays: the app would show a log every other device erased, and each
// edit the app makes to it would be a new version of an erased record.
func TestErasedRecordIsDeleted(t *testing.T) {
	h := newHostile(t)
	f := h.f
	inst := h.home.instance()
	rec := logRecord(f.learnerLog, f.dataset, f.learner, "c1", 0.25, inst, 1000)
	rec.Serialized, rec.HardDeleted, rec.Deleted = "{}", true, false
	r := h.city.mustImport(h.learnerBundle("erased-not-deleted.bundle", []bundle.Record{rec}))
	t.Logf("city: %+v", r.Store)
	got := h.city.record(f.learnerLog)
	rows := h.city.count(`SELECT count(*) FROM contentlog WHERE id = ?`, f.learnerLog)
	if r.Store.Refused == 0 && (got == nil || !got.HardDeleted || !got.Deleted || rows != 0) {
		t.Errorf("record %+v, %d app rows", got, rows)
	}
}
