package session

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/ids"
)

// A learner's tablet may not write another learner's data: a record in its
// own partition whose data names another learner is refused by every
// device that knows the record's model (TestRecordFieldsOutsideScope).
// A device whose profile is older and does not know the model cannot check
// it; were it to keep the record and pass it on in a bundle signed with its
// own full-facility certificate, the next device would check the data
// against the relay's write scope, the whole facility, and write the
// forged row into its app. So a record of a model the profile lacks is
// kept only from a signer that may write all the device reads.
func TestRelayByOlderProfileKeepsWriterScope(t *testing.T) {
	const schema = `CREATE TABLE quizlog (
		id TEXT PRIMARY KEY,
		dataset_id TEXT NOT NULL,
		user_id TEXT NOT NULL REFERENCES facilityuser (id),
		score REAL NOT NULL DEFAULT 0
	);`
	const models = `{"name": "quizlog", "table": "quizlog", "partition": "${dataset_id}:user-rw:${user_id}",
		"foreign_keys": {"user_id": "facilityuser"}},`
	stick := t.TempDir()
	fac := newAppDevice(t, "facility", schema, models)
	fac.root()
	f := seedFacility(fac)
	old := newDevice(t, "old") // the app's older version: no quizlog
	grant(t, fac, old, "full-facility", map[string]string{"dataset_id": f.dataset})
	home := newAppDevice(t, "home", schema, models)
	grant(t, fac, home, "single-user", map[string]string{"dataset_id": f.dataset, "user_id": f.learner})

	// The learner's tablet signs a quiz result of the other learner, in
	// its own partition.
	inst := home.instance()
	own := f.dataset + ":user-rw:" + f.learner
	q := ids.Random()
	rec := bundle.Record{ModelUUID: q, Profile: "facilitydata", ModelName: "quizlog", Partition: own,
		Serialized:        fmt.Sprintf(`{"id":%q,"dataset_id":%q,"user_id":%q,"score":0.0}`, q, f.dataset, f.other),
		LastSavedInstance: inst, LastSavedCounter: 5, RMC: []bundle.Counter{{Instance: inst, Counter: 5}}}
	chain, err := home.db.Chain(t.Context(), home.cert)
	if err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(stick, "forged.bundle")
	writeBundle(t, forged, bundle.Header{Profile: "facilitydata", SenderInstance: inst, SenderCert: home.cert,
		Chain: chain, Filter: []string{own}}, home.ownCert(home.cert).PrivateKey, []bundle.Record{rec})

	// Directly, the facility refuses it.
	if r := fac.mustImport(forged); r.Store.Refused != 1 {
		t.Fatalf("facility imported the forged record directly: %+v", r.Store)
	}
	// The older device cannot check it, and refuses it.
	if r := old.mustImport(forged); r.Store.Refused != 1 {
		t.Errorf("the older device kept the learner's record of a model it does not know: %+v", r.Store)
	}
	// What it relays to the facility, signed by its full-facility
	// certificate, does not carry it.
	relayed := filepath.Join(stick, "relayed.bundle")
	old.export(relayed, "")
	r := fac.mustImport(relayed)
	if n := fac.count(`SELECT count(*) FROM quizlog WHERE id = ?`, q); n != 0 {
		t.Errorf("the learner's forged quiz result of another learner reached the facility's app through the relay (refused %d): %+v",
			r.Store.Refused, r.Store)
	}
}
