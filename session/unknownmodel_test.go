package session

import (
	"fmt"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// TestDeletedRecordCannotTakeAnID keeps a learner from taking the id of a
// user the facility does not hold yet by a facilityuser record in the
// learner's own partition (FitsPartition). A record of a model name the
// profile does not know cannot be checked that way: from a signer that may
// write less than the device reads, such as the learner, it is refused, or
// the real user would later arrive as "id already used here by another
// model" and be refused at this and every later import.
func TestUnknownModelCannotTakeAnID(t *testing.T) {
	h := newHostile(t)
	f := h.f
	own := f.dataset + ":user-rw:" + f.learner
	cinst, inst := h.city.instance(), h.home.instance()
	newUser := ids.Random()

	squat := bundle.Record{ModelUUID: newUser, Profile: "facilitydata", ModelName: "zzz", Partition: own,
		Serialized: "{}", LastSavedInstance: inst, LastSavedCounter: 50,
		RMC: []bundle.Counter{{Instance: inst, Counter: 50}}}
	r := h.fac.mustImport(h.learnerBundle("squat.bundle", []bundle.Record{squat}))
	if r.Store.Refused != 1 {
		t.Errorf("the learner's record of model %q is kept: %+v", squat.ModelName, r.Store)
	}

	user := bundle.Record{ModelUUID: newUser, Profile: "facilitydata", ModelName: "facilityuser",
		Partition:         f.dataset + ":user-ro:" + newUser,
		Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"username":"dana","full_name":""}`, newUser, f.dataset),
		LastSavedInstance: cinst, LastSavedCounter: 101, RMC: []bundle.Counter{{Instance: cinst, Counter: 101}}}
	r = h.fac.mustImport(h.cityBundle("user.bundle", []bundle.Record{user}))
	if r.Store.Refused != 0 {
		t.Errorf("the real user, from the city, is refused: %+v", r.Store.Refusals)
	}
	if h.fac.count(`SELECT count(*) FROM facilityuser WHERE id = ?`, newUser) != 1 {
		t.Errorf("the real user never reaches the facility's app; the id is held by the learner's record of model %q", squat.ModelName)
	}
}
