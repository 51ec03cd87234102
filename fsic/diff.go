package fsic

import (
	"cmp"
	"maps"
	"slices"
	"strings"
)

// Expand turns an FSIC into the partitions and counters a diff compares,
// as the original's expand_fsic_for_use does: the filter prefixes are added
// to Sub; every Sub partition that is not below another Sub partition takes,
// per instance, the highest counter of the Super partitions that are
// prefixes of it (itself included) when that is higher than its own; empty
// partitions are dropped and only the Sub half is returned.
//
// Unlike the original, Expand does not change v.
func Expand(v V2, filter []string) Partitions {
	sub := clone(v.Sub)
	for _, f := range filter {
		if _, ok := sub[f]; !ok {
			sub[f] = Counters{}
		}
	}
	all := append(keys(sub), keys(v.Super)...)
	eachPrefix(all, func(p string, above []string) {
		m, ok := sub[p]
		if !ok {
			return
		}
		for _, q := range above {
			if _, ok := sub[q]; ok {
				return // below another Sub partition, which inherits instead
			}
		}
		inherit := func(q string) {
			for i, c := range v.Super[q] {
				if c > m[i] {
					m[i] = c
				}
			}
		}
		for _, q := range above {
			inherit(q)
		}
		inherit(p)
	})
	for p, m := range sub {
		if len(m) == 0 {
			delete(sub, p)
		}
	}
	return sub
}

// clone returns a deep copy of p; nil counters become empty ones.
func clone(p Partitions) Partitions {
	out := make(Partitions, len(p))
	for k, m := range p {
		c := make(Counters, len(m))
		maps.Copy(c, m)
		out[k] = c
	}
	return out
}

// Diff returns what the receiver lacks of what the sender holds, from two
// expanded FSICs, as the original's calculate_directional_fsic_diff_v2
// does: for each sender partition P and instance I, the receiver's level is
// its highest counter for I on P or on any partition of either side that is
// a prefix of P (0 if none); where that is below the sender's counter, the
// result holds it at [P][I]. Receiver counters on partitions below P are not
// looked at, so the diff may ask for records the receiver already has,
// never the reverse.
func Diff(sender, receiver Partitions) Partitions {
	out := Partitions{}
	eachPrefix(append(keys(sender), keys(receiver)...), func(p string, above []string) {
		for i, c := range sender[p] {
			level := receiver[p][i]
			for _, q := range above {
				level = max(level, receiver[q][i])
			}
			if level < c {
				put(out, p, i, level)
			}
		}
	})
	return out
}

// DiffV1 is the original's v1 calculate_directional_fsic_diff: for each
// instance whose sender counter is above the receiver's (0 if absent), the
// receiver's counter.
func DiffV1(sender, receiver Counters) Counters {
	out := Counters{}
	for i, c := range sender {
		if r := receiver[i]; r < c {
			out[i] = r
		}
	}
	return out
}

// Size returns the number of entries of p as the original counts them
// against its limits: one per partition and one per counter.
func Size(p Partitions) int {
	n := len(p)
	for _, m := range p {
		n += len(m)
	}
	return n
}

// Chunk splits p into pieces of at most n entries, exactly as the
// original's chunk_fsic_v2 does: partitions in byte order, instances in
// byte order; a partition costs one entry in each piece it appears in and
// an instance one entry; a new piece starts when no room is left before an
// instance is added. Partitions without counters take room but appear in no
// piece. With n < 2 each piece holds one counter.
func Chunk(p Partitions, n int) []Partitions {
	out := []Partitions{}
	cur := Partitions{}
	left := n
	for _, part := range slices.Sorted(maps.Keys(p)) {
		m := p[part]
		left--
		for _, i := range slices.Sorted(maps.Keys(m)) {
			if left <= 0 {
				if len(cur) > 0 {
					out = append(out, cur)
				}
				cur = Partitions{}
				left = n - 1
			}
			if cur[part] == nil {
				cur[part] = Counters{}
			}
			cur[part][i] = m[i]
			left--
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Selector selects the records whose partition starts with Partition and
// whose history holds a version by Instance with a counter above After.
//
// Our queue selects on a record's whole history, its record-max counters,
// where the original selects on its latest version only (last_saved_instance
// and last_saved_counter); that is why a diff becomes a list of
// (prefix, instance, counter) selectors rather than a filter on the latest
// writer. A record's latest version can be one its database does not claim
// yet (a merge makes a new local version whose database-max counter is only
// raised by the next serialization) while its history holds older versions
// by other instances that the database does claim. Selecting on the latest
// version alone leaves such a record behind although the sender's FSIC
// claims the versions in its history, and a receiver that then records
// those claims ([Claims]) would never ask for it again. Selecting on the
// history sends it. The records selected are a superset of the original's,
// so the cost is at most some records sent again.
type Selector struct {
	Partition string
	Instance  string
	After     int64
}

// Matches reports whether s selects a record with partition and history
// (instance → highest counter of its versions).
func (s Selector) Matches(partition string, history Counters) bool {
	c, ok := history[s.Instance]
	return ok && c > s.After && strings.HasPrefix(partition, s.Partition)
}

// Selectors lists the selectors of a diff, sorted by partition, then
// instance. A record is to be sent when any of them matches it.
func Selectors(diff Partitions) []Selector {
	var out []Selector
	for p, m := range diff {
		for i, c := range m {
			out = append(out, Selector{Partition: p, Instance: i, After: c})
		}
	}
	slices.SortFunc(out, func(a, b Selector) int {
		return cmp.Or(strings.Compare(a.Partition, b.Partition), strings.Compare(a.Instance, b.Instance))
	})
	return out
}
