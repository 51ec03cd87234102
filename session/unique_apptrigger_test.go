package session

import "testing"

// The app on City has a trigger of its own on the users' table, so the
// engine's writes run with the app's writes tracked. Users swap names on
// Facility: City's placeholders, the swap written and a row given its
// value back are the engine's writes, never the app's changes.
func TestUniqueSwapWithAppTriggerMarksNoChange(t *testing.T) {
	const touch = `CREATE TRIGGER app_touch AFTER UPDATE ON facilityuser BEGIN SELECT 1; END;`
	for _, tc := range []struct {
		name  string
		edits func(f facilityData) [][2]string
	}{
		{"two", func(f facilityData) [][2]string {
			return [][2]string{{f.learner, "tmp"}, {f.other, "ana"}, {f.learner, "ben"}}
		}},
		{"three", func(f facilityData) [][2]string {
			return [][2]string{{f.learner, "tmp"}, {f.admin, "ana"}, {f.other, "coach"}, {f.learner, "ben"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fac, city, f, send := swapDevices(t, uniqueNames, uniqueNames+"\n"+touch, "")
			send(fac, city)
			for _, e := range tc.edits(f) {
				fac.exec(`UPDATE facilityuser SET username = ? WHERE id = ?`, e[1], e[0])
			}
			send(fac, city)
			if n := city.count(`SELECT count(*) FROM morango_dirty`); n != 0 {
				t.Errorf("city: %d app row(s) marked as changed by the app", n)
			}
			if n := city.count(`SELECT count(*) FROM morango_store WHERE dirty_bit`); n != 0 {
				t.Errorf("city: %d record(s) wait", n)
			}
		})
	}
}
