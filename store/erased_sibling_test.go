package store

import (
	"context"
	"strings"
	"testing"

	"github.com/morango-sync/morango/merge"
)

// An erased version is deleted as well, whether it comes as a record's
// head or as one of its concurrent versions: a hard deletion the merge
// makes the head (it erases the local edit it is concurrent with) must
// remove the app row, not keep it under a record erased to {}.
func TestErasedSiblingBecomingHeadIsDeleted(t *testing.T) {
	ctx := context.Background()
	d := seedKept(t, ctx)
	local := d.storeRow(note1ID)
	y, x := strings.Repeat("9", 32), strings.Repeat("8", 32)
	// This device's head superseded another device's version (y, 1);
	// a third device erased the note concurrently, and its deletion comes
	// as a sibling of that version, erased but not marked deleted.
	d.exec(`INSERT INTO morango_recordmaxcounter (store_model_id, instance_id, counter) VALUES (?, ?, 1)`, note1ID, y)
	in := &Record{ID: note1ID, Profile: "testdata", ModelName: "note", Partition: local.Partition,
		Serialized:        `{"id":"` + note1ID + `","dataset_id":"` + dsID + `","person_id":"` + aliceID + `","parent_id":null,"body":"old"}`,
		LastSavedInstance: y, LastSavedCounter: 1,
		Conflicting: merge.EncodeSiblings([]merge.Version{{Instance: x, Counter: 1, Serialized: "{}", HardDeleted: true}}),
		History:     []HistoryEntry{{x, 1}, {y, 1}}}
	importBatch(t, d.db, []*Record{in}, nil)
	r := d.storeRow(note1ID)
	if !r.HardDeleted {
		t.Fatalf("the erasure did not win over the concurrent edit: %+v", r)
	}
	if n := d.count(`SELECT count(*) FROM note WHERE id = ?`, note1ID); !r.Deleted || n != 0 {
		t.Errorf("erased record %+v, %d app rows", r, n)
	}
}
