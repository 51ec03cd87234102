// Package merge decides what a device holds for a record after it receives
// another device's state of that record, so that devices syncing by carried
// files end up identical whatever order the files arrive in.
//
// A record's State is a multi-value register with a version vector, as in
// dotted version vectors. Each Version is identified by its dot (instance,
// counter). History records, per instance, the highest counter the state
// includes. Merging two states keeps every version that the other side
// holds too or has not yet seen, and drops the versions the other side has
// seen and superseded. It then joins the histories and picks the head:
//
//	local:    head a:2 "final"  history a:2
//	incoming: head b:1 "done"   history a:1 b:1
//	result:   head a:2 "final"  sibling b:1 "done"  history a:2 b:1   (Conflict)
//
// Merging in the other direction gives the same result. A later local edit
// (Edit) supersedes both versions and ends the conflict. Merge never makes a
// new version.
//
// # Order
//
// The head is the greatest version under this total order, compared field
// by field; a tombstone (below) is never the head while another version
// is not hard-deleted:
//
//  1. deletion: hard-deleted > deleted > not deleted;
//  2. the model's Rule (none by default; see ColumnRule);
//  3. Counter, greater wins;
//  4. Instance, greater string wins.
//
// # Hard deletion
//
// Hard deletion wins over every concurrent version. A merge that keeps a
// hard-deleted version erases every version that is not hard-deleted and
// comes from a side that had not seen that deletion, so erased data is not
// kept even as a sibling. A hard deletion supersedes everything it has
// seen, earlier hard deletions included.
//
// A later edit of a hard-deleted record re-creates it (Edit): the new
// version becomes the head. The hard deletion is not superseded, though: it
// stays as a tombstone sibling with no data. A version made concurrently
// with the deletion may still be on its way; the tombstone is what erases
// it when it arrives, whichever device it reaches first. Without it, the
// result would depend on the order of arrival. Conflicts lists the
// siblings without tombstones.
//
// # Storage
//
// The store keeps the head in its record columns, the history in its
// record-max-counter rows and the siblings in the conflicting_serialized_data
// column (EncodeSiblings, DecodeSiblings). DESIGN.md in this directory states
// the invariants and maps the design onto the original's dequeuing rules.
package merge
