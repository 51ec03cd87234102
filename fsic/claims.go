package fsic

import (
	"cmp"
	"slices"
	"strings"
)

// Claims returns the database-max counter rows a receiver may record once
// it has absorbed a transfer for filter from a sender whose FSIC for that
// filter is v. A Sub counter on a partition under the filter is claimed on
// that partition; a Super counter on a partition above filter prefix f is
// claimed on f, for every filter prefix it is above. Counters outside the
// filter and counters not above 0 are not claimed. Where several counters
// land on the same instance and partition, the highest is returned, so no
// row is lower than what the sender claims for it. Rows are sorted by
// partition, then instance.
//
// The caller records each row as the higher of its own counter and the
// claimed one ([MaxMerge]). The original's update_fsics wrote the Sub
// counters over its own even when lower, which made a device claim less
// than it held, and dropped the Super half, which made the next sync send
// again what had just arrived.
//
// Why this is safe: a claimed row (I, Q, c) says the sender held every
// version by I up to c of the records under Q (for a Super row, under a
// partition above Q, hence under Q). Take such a version, with counter
// c' <= c, of a record R. The sender's expanded FSIC has a partition P at
// or above R's partition where its counter for I is at least c' (expanding
// keeps the sender's level at every partition under the filter). If the
// receiver's level for I at P, in the FSIC the transfer was computed
// against, was at least c', the receiver held the version already.
// Otherwise the diff held that level at [P][I], below c', R's history,
// which holds the version, matched the selector, R was in the transfer,
// and merging keeps the highest counter per instance of both
// histories. This holds when
//
//   - v is the FSIC the sender computed the transfer with;
//   - the transfer was computed for this filter against holdings the
//     receiver really had (its own earlier manifest: counters never drop,
//     so its claims still hold) or against none (everything under the
//     filter was sent);
//   - every record of the transfer was absorbed: none was refused or lost.
//
// Otherwise the caller must claim nothing. Claiming less than this, as a
// reduced FSIC does, is always safe: it only makes a later sync send more.
func Claims(v V2, filter []string) []MaxCounter {
	best := Partitions{}
	for p, m := range v.Sub {
		if !underAny(p, filter) {
			continue
		}
		for i, c := range m {
			if c > 0 {
				put(best, p, i, c)
			}
		}
	}
	for s, m := range v.Super {
		for _, f := range filter {
			if len(s) >= len(f) || !strings.HasPrefix(f, s) {
				continue
			}
			for i, c := range m {
				if c > 0 {
					put(best, f, i, c)
				}
			}
		}
	}
	var out []MaxCounter
	for p, m := range best {
		for i, c := range m {
			out = append(out, MaxCounter{Instance: i, Partition: p, Counter: c})
		}
	}
	sortRows(out)
	return out
}

// MaxMerge returns the rows of local and claims together, one per instance
// and partition, with the higher counter where both have one: what a
// database-max counter table holds after the claims are recorded with an
// upsert that keeps the maximum. Rows are sorted by partition, then
// instance. Neither argument is changed.
func MaxMerge(local, claims []MaxCounter) []MaxCounter {
	type key struct{ instance, partition string }
	at := map[key]int{}
	var out []MaxCounter
	for _, l := range [][]MaxCounter{local, claims} {
		for _, r := range l {
			k := key{r.Instance, r.Partition}
			if n, ok := at[k]; ok {
				out[n].Counter = max(out[n].Counter, r.Counter)
				continue
			}
			at[k] = len(out)
			out = append(out, r)
		}
	}
	sortRows(out)
	return out
}

func sortRows(l []MaxCounter) {
	slices.SortFunc(l, func(a, b MaxCounter) int {
		return cmp.Or(strings.Compare(a.Partition, b.Partition), strings.Compare(a.Instance, b.Instance))
	})
}
