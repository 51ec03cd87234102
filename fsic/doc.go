// Package fsic computes filter-specific instance counters (FSICs): what a
// database holds, per writing instance and partition prefix, and from two of
// them what one side lacks. It follows the v2 format of Learning Equality's
// Morango. The functions are pure: the store supplies the database-max
// counter rows and applies the results.
//
// # Counters
//
// A database-max counter (I, P, c) claims: this database holds every version
// written by instance I, of records whose partition starts with P, up to
// counter c. The level of I at a partition Q is the highest counter of I on
// any partition that is a prefix of Q (Q itself included).
//
// A filter is a set of partition prefixes. Its FSIC ([V2]) splits the rows
// that bear on the filter in two halves: Sub holds the partitions at or below
// a filter prefix, Super the partitions strictly above one (strict prefixes
// of a filter prefix). Counters that a prefix partition already claims as
// high are removed ([RemoveRedundant]). On the wire it is
//
//	{"super": {partition: {instance: counter}}, "sub": {...}}
//
// # From two FSICs to what to send
//
// [Expand] pushes the Super counters down onto the filter prefixes and drops
// the Super half; [Diff] compares the expanded sender and receiver and
// returns, per sender partition P and instance I whose counter is above the
// receiver's level, that level. [Selectors] turns the diff into the queue's
// selectors: send every record under P whose history holds a version by I
// after the receiver's level. [Claims] gives the counters the receiver may
// record once it has absorbed what was sent.
//
// # Worked example
//
// Device X serialized its own edits as instance x (counter 7, recorded on
// the empty partition, which is above everything) and has received instance
// y's versions up to 4 for user U's partition "D:user-rw:U". Device Z holds
// x's versions up to 3 for "D", nothing from y. For the filter
// ["D:user-rw:U"]:
//
//	X: {"super": {"": {x: 7}}, "sub": {"D:user-rw:U": {y: 4}}}
//	Z: {"super": {"D": {x: 3}}, "sub": {}}
//
// Expanded, X holds {"D:user-rw:U": {x: 7, y: 4}} and Z holds
// {"D:user-rw:U": {x: 3}}. What Z lacks of X is {"D:user-rw:U": {x: 3, y: 0}}:
// the records under D:user-rw:U with a version by x after 3 or by y after 0.
// Once Z has absorbed them it claims (x, "D:user-rw:U", 7) and
// (y, "D:user-rw:U", 4), keeping its own (x, "D", 3).
//
// # Differences from the original
//
// The original's update_fsics recorded the remote Sub counters over the
// local ones even when lower, and dropped the Super half; [Claims] and
// [MaxMerge] never lower a counter and record the Super half on the filter
// prefixes. [Expand] does not change its argument. FSICs read from files are
// bounded and checked ([Parse], [Validate]).
package fsic
