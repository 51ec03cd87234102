// Package fsic computes filter-specific instance counters (FSICs): what a
// database holds, per writing instance and partition prefix, and from two
// of them what one side lacks. The functions are pure; the store supplies
// the database-max counter rows.
//
// A database-max counter (I, P, c) says: this database holds every version
// written by instance I, of records whose partition starts with P, up to
// counter c. For a filter (a set of partition prefixes) the counters on
// partitions at or below a filter prefix form the FSIC's Sub half, those on
// partitions above one (strict prefixes of a filter prefix) its Super half,
// as in the original's v2 format.
//
// Example: a device whose only counter is (A, "", 7) asked about the filter
// ["D:user-rw:U"] holds {"super": {"": {A: 7}}, "sub": {}}: the empty
// partition is above every filter prefix. Expanded for use, that is
// {"D:user-rw:U": {A: 7}}. A peer that holds {"D:user-rw:U": {A: 3}} lacks
// A's versions after 3 under D:user-rw:U, which Diff reports as
// {"D:user-rw:U": {A: 3}}.
package fsic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Calculate returns the FSIC of the counter rows for filter. keep, if not
// nil, drops (partition, instance) pairs (the original's reduction); a
// partition appears only if one of its pairs is kept. Redundant counters —
// those a prefix partition already claims as high — are removed.
func Calculate(rows []MaxCounter, filter []string, keep func(partition, instance string) bool) V2 {
	v := V2{Super: Partitions{}, Sub: Partitions{}}
	for _, r := range rows {
		if keep != nil && !keep(r.Partition, r.Instance) {
			continue
		}
		if underAny(r.Partition, filter) {
			raise(v.Sub, r.Partition, r.Instance, r.Counter)
		}
		if strictPrefixOfAny(r.Partition, filter) {
			raise(v.Super, r.Partition, r.Instance, r.Counter)
		}
	}
	RemoveRedundant(&v)
	return v
}

func raise(p Partitions, partition, instance string, c int64) {
	m := p[partition]
	if m == nil {
		m = Counters{}
		p[partition] = m
	}
	if c > m[instance] {
		m[instance] = c
	}
}

func underAny(p string, filter []string) bool {
	for _, f := range filter {
		if strings.HasPrefix(p, f) {
			return true
		}
	}
	return false
}

func strictPrefixOfAny(p string, filter []string) bool {
	for _, f := range filter {
		if len(p) < len(f) && strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}

// RemoveRedundant deletes, in both halves, every counter that a strict
// prefix partition (in either half; Sub's value where both have the key)
// already holds at least as high. Emptied partitions stay, empty.
func RemoveRedundant(v *V2) {
	all := Partitions{}
	for p, m := range v.Super {
		all[p] = m
	}
	for p, m := range v.Sub {
		all[p] = m
	}
	orig := clone(all)
	for _, half := range []Partitions{v.Super, v.Sub} {
		for p, m := range half {
			for q, qm := range orig {
				if len(q) >= len(p) || !strings.HasPrefix(p, q) {
					continue
				}
				for i, c := range m {
					if qm[i] >= c {
						delete(m, i)
					}
				}
			}
		}
	}
}

func clone(p Partitions) Partitions {
	out := make(Partitions, len(p))
	for k, m := range p {
		c := make(Counters, len(m))
		for i, n := range m {
			c[i] = n
		}
		out[k] = c
	}
	return out
}

// Expand turns an FSIC into the partitions → counters a diff compares: the
// filter's prefixes are added to Sub, every Sub partition that is not below
// another Sub partition inherits the higher counters of the Super
// partitions above it, and empty partitions are dropped. v is not changed.
func Expand(v V2, filter []string) Partitions {
	sub := clone(v.Sub)
	for _, f := range filter {
		if _, ok := sub[f]; !ok {
			sub[f] = Counters{}
		}
	}
	keys := make([]string, 0, len(sub))
	for p := range sub {
		keys = append(keys, p)
	}
	for _, p := range keys {
		subordinate := false
		for _, q := range keys {
			if len(q) < len(p) && strings.HasPrefix(p, q) {
				subordinate = true
				break
			}
		}
		if subordinate {
			continue
		}
		for s, sm := range v.Super {
			if !strings.HasPrefix(p, s) {
				continue
			}
			for i, c := range sm {
				if c > sub[p][i] {
					sub[p][i] = c
				}
			}
		}
	}
	for p, m := range sub {
		if len(m) == 0 {
			delete(sub, p)
		}
	}
	return sub
}

// Diff returns what the receiver lacks of what the sender holds: for each
// partition P and instance I of sender whose counter is above the
// receiver's level — the highest receiver counter for I on P or on any
// partition of either side that is a prefix of P — the receiver's level.
func Diff(sender, receiver Partitions) Partitions {
	keys := map[string]bool{}
	for p := range sender {
		keys[p] = true
	}
	for p := range receiver {
		keys[p] = true
	}
	out := Partitions{}
	for p, m := range sender {
		for i, c := range m {
			var level int64
			for k := range keys {
				if strings.HasPrefix(p, k) {
					if r := receiver[k][i]; r > level {
						level = r
					}
				}
			}
			if level < c {
				raise(out, p, i, 0)
				out[p][i] = level
			}
		}
	}
	return out
}

// DiffV1 is the original's v1 directional diff: for each instance of
// sender with a counter above receiver's (0 if absent), receiver's counter.
func DiffV1(sender, receiver Counters) Counters {
	out := Counters{}
	for i, c := range sender {
		if r := receiver[i]; r < c {
			out[i] = r
		}
	}
	return out
}

// Selector selects the records under Partition whose history holds a
// version by Instance with a counter above After.
//
// Queuing selects on a record's whole history (its record-max counters),
// not only its latest version, so that joined histories and concurrent
// versions reach devices that already had the latest one.
type Selector struct {
	Partition string
	Instance  string
	After     int64
}

// Selectors lists a diff's selectors, sorted by partition then instance.
func Selectors(diff Partitions) []Selector {
	var out []Selector
	for p, m := range diff {
		for i, c := range m {
			out = append(out, Selector{Partition: p, Instance: i, After: c})
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Partition != out[b].Partition {
			return out[a].Partition < out[b].Partition
		}
		return out[a].Instance < out[b].Instance
	})
	return out
}

// Claims returns the counter rows a receiver may record once it has
// absorbed a transfer for filter from a sender holding v: the transfer
// carried every record under the filter that the sender held and the
// receiver lacked, so the receiver now holds what the sender claimed, under
// the filter. Sub counters under the filter are claimed on their
// partition; a Super counter on a partition above filter prefix f is
// claimed on f. The caller keeps the higher of its own and the claimed
// counter (the original's update_fsics could lower a counter; this never
// does).
func Claims(v V2, filter []string) []MaxCounter {
	best := Partitions{}
	for p, m := range v.Sub {
		if !underAny(p, filter) {
			continue
		}
		for i, c := range m {
			raise(best, p, i, c)
		}
	}
	for s, m := range v.Super {
		for _, f := range filter {
			if len(s) < len(f) && strings.HasPrefix(f, s) {
				for i, c := range m {
					raise(best, f, i, c)
				}
			}
		}
	}
	var out []MaxCounter
	for p, m := range best {
		for i, c := range m {
			if c > 0 {
				out = append(out, MaxCounter{Instance: i, Partition: p, Counter: c})
			}
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Partition != out[b].Partition {
			return out[a].Partition < out[b].Partition
		}
		return out[a].Instance < out[b].Instance
	})
	return out
}

// Errors of untrusted FSICs.
var (
	ErrInvalidPartition = errors.New("fsic partition outside the filter")
	ErrInvalid          = errors.New("invalid fsic")
)

// MaxEntries bounds the entries (partitions plus counters) of an FSIC read
// from a file.
const MaxEntries = 100_000

// Validate checks an FSIC from an untrusted source against its filter:
// every Sub partition lies under a filter prefix, every Super partition
// above one, counters are positive, instance ids are 32 lower-case hex
// digits, and the size is bounded.
func Validate(v V2, filter []string) error {
	n := 0
	for _, half := range []struct {
		name  string
		parts Partitions
		ok    func(string) bool
	}{
		{"sub", v.Sub, func(p string) bool { return underAny(p, filter) }},
		{"super", v.Super, func(p string) bool { return strictPrefixOfAny(p, filter) }},
	} {
		for p, m := range half.parts {
			n += 1 + len(m)
			if n > MaxEntries {
				return fmt.Errorf("%w: more than %d entries", ErrInvalid, MaxEntries)
			}
			if !half.ok(p) {
				return fmt.Errorf("%w: %s partition %q", ErrInvalidPartition, half.name, p)
			}
			for i, c := range m {
				if !validID(i) {
					return fmt.Errorf("%w: instance %q", ErrInvalid, i)
				}
				if c <= 0 {
					return fmt.Errorf("%w: counter %d of %s", ErrInvalid, c, i)
				}
			}
		}
	}
	return nil
}

func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Parse reads an FSIC's JSON strictly: only "super" and "sub", no trailing
// data.
func Parse(data []byte) (V2, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v V2
	if err := dec.Decode(&v); err != nil {
		return V2{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return V2{}, fmt.Errorf("%w: trailing data", ErrInvalid)
	}
	if v.Super == nil {
		v.Super = Partitions{}
	}
	if v.Sub == nil {
		v.Sub = Partitions{}
	}
	return v, nil
}
