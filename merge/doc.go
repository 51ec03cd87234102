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
// Among the concurrent versions of a record the head is the greatest under
// this total order, compared field by field:
//
//  1. deletion: hard-deleted > deleted > not deleted;
//  2. the model's Rule (none by default; see ColumnRule);
//  3. Counter, greater wins;
//  4. Instance, greater string wins.
//
// # Hard deletion
//
// If any version left after a merge is hard-deleted, only the hard-deleted
// versions stay: erased data is not kept even as a sibling. A later edit
// whose history covers the hard deletion (a re-creation) supersedes it like
// any other version.
//
// One case is not associative. Take a version x concurrent with a hard
// deletion h, and a re-creation e made after h by a device that never saw x.
// If x meets h first, x is erased, and e later replaces h, so the result is
// e alone. If e replaces h before x arrives, nothing shows that x was
// concurrent with a hard deletion, so x stays as a sibling of e. Devices
// still converge, because a version that is dropped anywhere is dropped
// everywhere it travels. But which of the two outcomes they reach depends on
// the order of arrival. DESIGN.md explains why no rule over this State can
// avoid this.
//
// # Storage
//
// The store keeps the head in its record columns, the history in its
// record-max-counter rows and the siblings in the conflicting_serialized_data
// column (EncodeSiblings, DecodeSiblings). DESIGN.md in this directory states
// the invariants and maps the design onto the original's dequeuing rules.
package merge
