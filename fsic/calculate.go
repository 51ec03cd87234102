package fsic

import (
	"slices"
	"strings"
)

// Calculate returns the FSIC of the database-max counter rows for filter,
// as the original's calculate_filter_specific_instance_counters does in v2
// format: Sub holds the rows whose partition starts with a filter prefix,
// Super those whose partition is a strict prefix of one (a row can be in
// both), grouped per partition; then redundant counters are removed
// ([RemoveRedundant]).
//
// keep, if not nil, is the original's reduction: it is asked about each
// (partition, instance) of a row that bears on the filter, and the row is
// dropped when it returns false. A partition appears only if one of its
// rows is kept. Dropping a row only makes the FSIC claim less, which is
// always safe. The original keeps, on the producing side, the rows whose
// instance is the last writer of some record under the partition, and on
// the receiving side the rows whose instance appears in the history of some
// record under the partition.
func Calculate(rows []MaxCounter, filter []string, keep func(partition, instance string) bool) V2 {
	v := V2{Super: Partitions{}, Sub: Partitions{}}
	for _, r := range rows {
		sub, super := underAny(r.Partition, filter), aboveAny(r.Partition, filter)
		if !sub && !super {
			continue
		}
		if keep != nil && !keep(r.Partition, r.Instance) {
			continue
		}
		if sub {
			put(v.Sub, r.Partition, r.Instance, r.Counter)
		}
		if super {
			put(v.Super, r.Partition, r.Instance, r.Counter)
		}
	}
	RemoveRedundant(&v)
	return v
}

// CalculateV1 returns the original's v1 (flat) FSIC of the rows for filter.
// For each filter prefix f it takes, per instance, the highest counter on
// the partitions that are prefixes of f (f included). A producer claims,
// per instance, the highest of these over the filter prefixes; a receiver
// claims only the instances found for every prefix, at the lowest. Rows on
// partitions below a filter prefix are ignored: the v1 format cannot say
// what a database holds under part of a filter prefix.
func CalculateV1(rows []MaxCounter, filter []string, producer bool) Counters {
	per := make([]Counters, len(filter))
	for k, f := range filter {
		m := Counters{}
		for _, r := range rows {
			if strings.HasPrefix(f, r.Partition) {
				raise(m, r.Instance, r.Counter)
			}
		}
		per[k] = m
	}
	out := Counters{}
	if len(per) == 0 {
		return out
	}
	if producer {
		for _, m := range per {
			for i, c := range m {
				raise(out, i, c)
			}
		}
		return out
	}
	for i, c := range per[0] {
		low, everywhere := c, true
		for _, m := range per[1:] {
			d, ok := m[i]
			if !ok {
				everywhere = false
				break
			}
			low = min(low, d)
		}
		if everywhere {
			out[i] = low
		}
	}
	return out
}

// put records counter c of instance on partition, keeping the higher one
// if the pair is already there.
func put(p Partitions, partition, instance string, c int64) {
	m := p[partition]
	if m == nil {
		m = Counters{}
		p[partition] = m
	}
	raise(m, instance, c)
}

// raise records counter c of instance in m, keeping the higher one if the
// instance is already there.
func raise(m Counters, instance string, c int64) {
	if old, ok := m[instance]; !ok || c > old {
		m[instance] = c
	}
}

// underAny reports whether partition starts with a filter prefix.
func underAny(partition string, filter []string) bool {
	for _, f := range filter {
		if strings.HasPrefix(partition, f) {
			return true
		}
	}
	return false
}

// aboveAny reports whether partition is a strict prefix of a filter prefix.
func aboveAny(partition string, filter []string) bool {
	for _, f := range filter {
		if len(partition) < len(f) && strings.HasPrefix(f, partition) {
			return true
		}
	}
	return false
}

// RemoveRedundant deletes, in both halves of v and in place, every counter
// that a partition strictly above it already claims at least as high. The
// partitions above are looked up in Super and Sub together, Sub's counters
// winning where both have the partition, as in the original's
// remove_redundant_instance_counters. Emptied partitions stay, empty: an
// empty Sub partition still tells [Expand] that the partition is known.
func RemoveRedundant(v *V2) {
	merged := make(Partitions, len(v.Super)+len(v.Sub))
	for p, m := range v.Super {
		merged[p] = m
	}
	for p, m := range v.Sub {
		merged[p] = m
	}
	type entry struct {
		half      Partitions
		partition string
		instance  string
	}
	// Find everything first, then delete: the result is then that of
	// comparing with the counters as they were, which is also what the
	// original's deletion in passing comes to (a counter is only removed
	// when a shorter partition holds one as high, and the shortest such
	// one is never removed).
	var drop []entry
	eachPrefix(keys(merged), func(p string, above []string) {
		for _, half := range []Partitions{v.Super, v.Sub} {
			for i, c := range half[p] {
				for _, q := range above {
					if d, ok := merged[q][i]; ok && d >= c {
						drop = append(drop, entry{half, p, i})
						break
					}
				}
			}
		}
	})
	for _, e := range drop {
		delete(e.half[e.partition], e.instance)
	}
}

// Prefixes maps each of keys to the other keys that are prefixes of it,
// shortest first, as the original's _build_prefix_mapper does; with self,
// each key is also listed as a prefix of itself. Keys with no prefix are
// left out.
func Prefixes(keys []string, self bool) map[string][]string {
	out := map[string][]string{}
	eachPrefix(keys, func(k string, above []string) {
		l := slices.Clone(above)
		if self {
			l = append(l, k)
		}
		if len(l) > 0 {
			out[k] = l
		}
	})
	return out
}

// SubPartitions returns, sorted, the keys that have another of keys as a
// strict prefix, as the original's _get_sub_partitions does.
func SubPartitions(keys []string) []string {
	var out []string
	eachPrefix(keys, func(k string, above []string) {
		if len(above) > 0 {
			out = append(out, k)
		}
	})
	return out
}

// eachPrefix calls fn for each distinct key, in byte order, with the keys
// that are strict prefixes of it, shortest first. fn must not keep above.
//
// In byte order, a key's prefixes come before it and every key between a
// prefix and the key also starts with that prefix, so the prefixes of the
// current key are the previous key and its prefixes, less those that are
// not prefixes of the current one: a stack. This takes n log n comparisons
// where comparing every pair would take n², which matters for FSICs read
// from files.
func eachPrefix(keys []string, fn func(key string, above []string)) {
	sorted := slices.Compact(slices.Sorted(slices.Values(keys)))
	var stack []string
	for _, k := range sorted {
		for len(stack) > 0 && !strings.HasPrefix(k, stack[len(stack)-1]) {
			stack = stack[:len(stack)-1]
		}
		fn(k, stack)
		stack = append(stack, k)
	}
}

// keys returns the partitions of p, in no particular order.
func keys(p Partitions) []string {
	out := make([]string, 0, len(p))
	for k := range p {
		out = append(out, k)
	}
	return out
}
