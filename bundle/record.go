package bundle

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"
)

// Record is one record as a bundle carries it: the original Morango's
// buffer record with its record-max counters.
type Record struct {
	ModelUUID                 string
	Profile                   string
	ModelName                 string
	Partition                 string
	SourceID                  string
	Serialized                string
	Deleted                   bool
	HardDeleted               bool
	LastSavedInstance         string
	LastSavedCounter          int64
	ConflictingSerializedData string
	SelfRefFK                 string
	// RMC is the record's history: the highest counter of each instance
	// that wrote a version of it. A reader returns it sorted by instance.
	RMC []Counter
}

// Counter is one record-max counter: the record holds the versions written
// by Instance up to Counter.
type Counter struct {
	Instance string
	Counter  int64
}

// MaxRecordCounters is the most record-max counters a record may carry: one
// for each instance that ever wrote a version of it. It bounds what a
// reader allocates for one record (about 48 bytes per counter) whatever
// its chunk holds.
const MaxRecordCounters = 1 << 16

// The number of string fields of a record before its record-max counters.
const recordStrings = 9

// minRecordSize is the size of a record whose strings are empty and
// numbers zero.
const minRecordSize = recordStrings + 2 + 1 + 1

// appendRecord appends the encoding of r to dst. scratch is reused to sort
// the record-max counters when they are not sorted already.
func appendRecord(dst []byte, r *Record, scratch *[]Counter) ([]byte, error) {
	for _, f := range [...]struct {
		name, s string
	}{
		{"model_uuid", r.ModelUUID}, {"profile", r.Profile}, {"model_name", r.ModelName},
		{"partition", r.Partition}, {"source_id", r.SourceID}, {"serialized", r.Serialized},
		{"last_saved_instance", r.LastSavedInstance},
		{"conflicting_serialized_data", r.ConflictingSerializedData}, {"_self_ref_fk", r.SelfRefFK},
	} {
		if !utf8.ValidString(f.s) {
			return dst, fmt.Errorf("record %s: %s is not valid UTF-8: %w", r.ModelUUID, f.name, ErrMalformed)
		}
	}
	if r.LastSavedCounter < 0 {
		return dst, fmt.Errorf("record %s: negative counter %d: %w", r.ModelUUID, r.LastSavedCounter, ErrMalformed)
	}
	rmc := r.RMC
	if len(rmc) > MaxRecordCounters {
		return dst, fmt.Errorf("record %s: %d record-max counters, more than %d: %w", r.ModelUUID, len(rmc), MaxRecordCounters, ErrMalformed)
	}
	if !slices.IsSortedFunc(rmc, compareCounters) {
		*scratch = append((*scratch)[:0], rmc...)
		slices.SortFunc(*scratch, compareCounters)
		rmc = *scratch
	}
	for i, c := range rmc {
		if i > 0 && rmc[i-1].Instance == c.Instance {
			return dst, fmt.Errorf("record %s: two record-max counters for instance %q: %w", r.ModelUUID, c.Instance, ErrMalformed)
		}
		if c.Counter < 0 {
			return dst, fmt.Errorf("record %s: negative counter %d for instance %q: %w", r.ModelUUID, c.Counter, c.Instance, ErrMalformed)
		}
		if !utf8.ValidString(c.Instance) {
			return dst, fmt.Errorf("record %s: record-max counter instance is not valid UTF-8: %w", r.ModelUUID, ErrMalformed)
		}
	}

	dst = appendString(dst, r.ModelUUID)
	dst = appendString(dst, r.Profile)
	dst = appendString(dst, r.ModelName)
	dst = appendString(dst, r.Partition)
	dst = appendString(dst, r.SourceID)
	dst = appendString(dst, r.Serialized)
	dst = appendBool(dst, r.Deleted)
	dst = appendBool(dst, r.HardDeleted)
	dst = appendString(dst, r.LastSavedInstance)
	dst = binary.AppendUvarint(dst, uint64(r.LastSavedCounter))
	dst = appendString(dst, r.ConflictingSerializedData)
	dst = appendString(dst, r.SelfRefFK)
	dst = binary.AppendUvarint(dst, uint64(len(rmc)))
	for _, c := range rmc {
		dst = appendString(dst, c.Instance)
		dst = binary.AppendUvarint(dst, uint64(c.Counter))
	}
	return dst, nil
}

func compareCounters(a, b Counter) int { return cmp.Compare(a.Instance, b.Instance) }

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// recordDecoder parses records out of one decompressed chunk.
type recordDecoder struct {
	buf []byte
	off int
	// spans of the current record's strings, reused between records
	spans []span
}

type span struct{ off, end int }

// next parses the record at the decoder's offset into r. Every string of
// the record shares one allocation.
func (d *recordDecoder) next(r *Record) error {
	start := d.off
	d.spans = d.spans[:0]
	var (
		deleted, hard bool
		lastCounter   int64
		nRMC          uint64
		err           error
	)
	for i := range recordStrings {
		if err = d.str(); err != nil {
			return err
		}
		switch i {
		case 5: // after serialized
			if deleted, err = d.bool(); err != nil {
				return err
			}
			if hard, err = d.bool(); err != nil {
				return err
			}
		case 6: // after last_saved_instance
			if lastCounter, err = d.counter(); err != nil {
				return err
			}
		}
	}
	if nRMC, err = d.uvarint(); err != nil {
		return err
	}
	// Each pair takes at least two bytes: bound the count before
	// allocating for it.
	if nRMC > MaxRecordCounters {
		return fmt.Errorf("record %s: record-max counter list of %d entries, more than %d: %w", d.id(), nRMC, MaxRecordCounters, ErrMalformed)
	}
	if nRMC > uint64(len(d.buf)-d.off)/2 {
		return fmt.Errorf("record-max counter list of %d entries is longer than its chunk: %w", nRMC, ErrMalformed)
	}
	counters := make([]int64, 0, nRMC)
	for i := range nRMC {
		if err = d.str(); err != nil {
			return err
		}
		// Checked as each pair is read, so that a long list stops at
		// its first pair out of order.
		if i > 0 {
			a, b := d.spans[len(d.spans)-2], d.spans[len(d.spans)-1]
			if bytes.Compare(d.buf[a.off:a.end], d.buf[b.off:b.end]) >= 0 {
				return fmt.Errorf("record %s: record-max counters not sorted by instance: %w", d.id(), ErrMalformed)
			}
		}
		c, err := d.counter()
		if err != nil {
			return err
		}
		counters = append(counters, c)
	}

	s := string(d.buf[start:d.off])
	field := func(i int) string { return s[d.spans[i].off-start : d.spans[i].end-start] }
	*r = Record{
		ModelUUID:                 field(0),
		Profile:                   field(1),
		ModelName:                 field(2),
		Partition:                 field(3),
		SourceID:                  field(4),
		Serialized:                field(5),
		Deleted:                   deleted,
		HardDeleted:               hard,
		LastSavedInstance:         field(6),
		LastSavedCounter:          lastCounter,
		ConflictingSerializedData: field(7),
		SelfRefFK:                 field(8),
	}
	if nRMC > 0 {
		r.RMC = make([]Counter, nRMC)
		for i := range r.RMC {
			r.RMC[i] = Counter{Instance: field(recordStrings + i), Counter: counters[i]}
		}
	}
	return nil
}

// id is the id of the record being read, for errors.
func (d *recordDecoder) id() string {
	if len(d.spans) == 0 {
		return "?"
	}
	return string(d.buf[d.spans[0].off:d.spans[0].end])
}

func (d *recordDecoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.buf[d.off:])
	switch {
	case n == 0:
		return 0, fmt.Errorf("record ends inside a number: %w", ErrMalformed)
	case n < 0:
		return 0, fmt.Errorf("number overflows 64 bits: %w", ErrMalformed)
	case n > 1 && d.buf[d.off+n-1] == 0:
		return 0, fmt.Errorf("number not minimally encoded: %w", ErrMalformed)
	}
	d.off += n
	return v, nil
}

func (d *recordDecoder) counter() (int64, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("counter %d above 2^63-1: %w", v, ErrMalformed)
	}
	return int64(v), nil
}

func (d *recordDecoder) str() error {
	n, err := d.uvarint()
	if err != nil {
		return err
	}
	if n > uint64(len(d.buf)-d.off) {
		return fmt.Errorf("string of %d bytes is longer than its chunk: %w", n, ErrMalformed)
	}
	end := d.off + int(n)
	if !utf8.Valid(d.buf[d.off:end]) {
		return fmt.Errorf("string is not valid UTF-8: %w", ErrMalformed)
	}
	d.spans = append(d.spans, span{d.off, end})
	d.off = end
	return nil
}

func (d *recordDecoder) bool() (bool, error) {
	if d.off >= len(d.buf) {
		return false, fmt.Errorf("record ends inside a boolean: %w", ErrMalformed)
	}
	b := d.buf[d.off]
	if b > 1 {
		return false, fmt.Errorf("boolean byte 0x%02x: %w", b, ErrMalformed)
	}
	d.off++
	return b == 1, nil
}
