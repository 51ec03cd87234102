package session

import "testing"

// The facility records a week of logs and exchanges with the stick each
// day, but the city does not visit that week: the week is on the stick
// only, in the facility's manifest and in its bundle for the city. Then the
// facility's disk fails and last week's backup is restored. Its own former
// manifest on the stick is signed, trusted evidence that the instance holds
// more than the restored file (its counter is under partition "", above
// every read scope): the restored facility renews, keeps its former bundle
// for the city, and the week reaches the city and comes back.
func TestRestoredFacilityRenewsOnItsOwnFormerManifest(t *testing.T) {
	stick := t.TempDir()
	fac, city, _, db, app, old := restoredFacilityWeek(t, stick, false, nil)
	r := visitStick(t, stick, fac, db)
	if r.Renewed != old {
		t.Errorf("the restored facility's exchange did not renew although its own former manifest on the stick holds more of %s than the file (files: %+v)", old[:8], describeFiles(r))
	}
	for range 3 {
		visitStick(t, stick, city, city.db)
		visitStick(t, stick, fac, db)
	}
	if n := city.count(`SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
		t.Errorf("city: %d of the 5 logs of the facility's last week arrived", n)
	}
	if n := count(t, app, `SELECT count(*) FROM contentlog WHERE content_id LIKE 'week-%'`); n != 5 {
		t.Errorf("facility: %d of the 5 logs of the week before the failure came back", n)
	}
}

func describeFiles(r *ExchangeResult) []string {
	var l []string
	for _, fr := range r.Files {
		l = append(l, fr.File[:8]+" "+fr.Action+" "+fr.Reason)
	}
	return l
}
