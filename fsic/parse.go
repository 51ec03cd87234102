package fsic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Limits on FSICs read from files.
const (
	// MaxSize bounds the bytes [Parse] reads.
	MaxSize = 16 << 20
	// MaxEntries bounds the partitions plus counters of an FSIC, both
	// halves together. The original refuses to queue with 100,000 entries
	// or more.
	MaxEntries = 100_000
	// MaxPartitionLen bounds the bytes of a partition. The original's
	// database-max counter partitions hold at most 128 characters.
	MaxPartitionLen = 1024
)

// Errors of FSICs from untrusted sources. [Parse] wraps ErrSyntax or
// ErrTooLarge; [Validate] returns an [*Error] wrapping ErrTooLarge,
// ErrInvalidPartition, ErrInvalidInstance or ErrInvalidCounter.
var (
	ErrSyntax           = errors.New("malformed fsic")
	ErrTooLarge         = errors.New("fsic too large")
	ErrInvalidPartition = errors.New("partition outside the filter")
	ErrInvalidInstance  = errors.New("instance id is not 32 lower-case hex digits")
	ErrInvalidCounter   = errors.New("counter is not positive")
)

// Error is an FSIC that [Validate] refuses: what is wrong (Err, one of the
// sentinel errors) and where.
type Error struct {
	Half      string // "super" or "sub"; empty for the whole FSIC
	Partition string
	Instance  string // empty unless the fault is in a counter
	Err       error
}

func (e *Error) Error() string {
	switch {
	case e.Half == "":
		return e.Err.Error()
	case e.Instance == "":
		return fmt.Sprintf("fsic %s partition %q: %v", e.Half, e.Partition, e.Err)
	default:
		return fmt.Sprintf("fsic %s partition %q, instance %q: %v", e.Half, e.Partition, e.Instance, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Validate checks an FSIC from an untrusted source against the filter it
// is for: every Sub partition starts with a filter prefix (the original's
// MorangoInvalidFSICPartition check before queuing), every Super partition
// is a strict prefix of one, no partition is longer than MaxPartitionLen,
// instance ids are 32 lower-case hex digits, counters are above 0, and
// there are at most MaxEntries entries. It returns the first fault found,
// in byte order of partitions and instances, as an [*Error].
func Validate(v V2, filter []string) error {
	if n := Size(v.Super) + Size(v.Sub); n > MaxEntries {
		return &Error{Err: fmt.Errorf("%w: %d entries, more than %d", ErrTooLarge, n, MaxEntries)}
	}
	for _, h := range []struct {
		name  string
		parts Partitions
		ok    func(string, []string) bool
	}{{"super", v.Super, aboveAny}, {"sub", v.Sub, underAny}} {
		for _, p := range sortedKeys(h.parts) {
			if len(p) > MaxPartitionLen {
				return &Error{Half: h.name, Partition: p[:64] + "...",
					Err: fmt.Errorf("%w: partition of %d bytes, more than %d", ErrTooLarge, len(p), MaxPartitionLen)}
			}
			if !h.ok(p, filter) {
				return &Error{Half: h.name, Partition: p, Err: ErrInvalidPartition}
			}
			m := h.parts[p]
			for _, i := range sortedKeys(m) {
				if !validID(i) {
					return &Error{Half: h.name, Partition: p, Instance: i, Err: ErrInvalidInstance}
				}
				if m[i] <= 0 {
					return &Error{Half: h.name, Partition: p, Instance: i, Err: fmt.Errorf("%w: %d", ErrInvalidCounter, m[i])}
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
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	return slices.Sorted(maps.Keys(m))
}

// MarshalJSON writes v as {"super":{...},"sub":{...}}, keys in byte order,
// a missing half or partition as {} rather than null.
func (v V2) MarshalJSON() ([]byte, error) {
	type wire struct {
		Super Partitions `json:"super"`
		Sub   Partitions `json:"sub"`
	}
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	// The caller's encoder escapes HTML or not as it is set to; escaping
	// here would escape always.
	e.SetEscapeHTML(false)
	if err := e.Encode(wire{nonNil(v.Super), nonNil(v.Sub)}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// nonNil returns p with nil replaced by empty maps, copying only if needed.
func nonNil(p Partitions) Partitions {
	if p == nil {
		return Partitions{}
	}
	for _, m := range p {
		if m == nil {
			return clone(p)
		}
	}
	return p
}

// Parse reads an FSIC in its JSON form from an untrusted source. It accepts
// exactly one object with the members "super" and "sub", each an object of
// partitions, each an object of instance ids to integers; whitespace may
// appear between tokens. It rejects anything else: other members, missing
// members, null, repeated keys (after unescaping), numbers that are not
// integers or do not fit in 64 bits, invalid UTF-8, data after the object,
// more than MaxSize bytes and more than MaxEntries entries. It does not
// check the content against a filter; see [Validate].
func Parse(data []byte) (V2, error) {
	if len(data) > MaxSize {
		return V2{}, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(data), MaxSize)
	}
	if !utf8.Valid(data) {
		return V2{}, fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	}
	p := &parser{dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	v, err := p.fsic()
	if err != nil {
		return V2{}, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return V2{}, fmt.Errorf("%w: data after the object", ErrSyntax)
	}
	return v, nil
}

type parser struct {
	dec     *json.Decoder
	entries int
}

func (p *parser) fsic() (V2, error) {
	var v V2
	err := p.object("fsic", func(key string) error {
		var half *Partitions
		switch key {
		case "super":
			half = &v.Super
		case "sub":
			half = &v.Sub
		default:
			return fmt.Errorf("%w: unknown member %q", ErrSyntax, key)
		}
		var err error
		*half, err = p.partitions(key)
		return err
	})
	if err != nil {
		return V2{}, err
	}
	if v.Super == nil || v.Sub == nil {
		return V2{}, fmt.Errorf("%w: \"super\" and \"sub\" are both required", ErrSyntax)
	}
	return v, nil
}

func (p *parser) partitions(half string) (Partitions, error) {
	out := Partitions{}
	err := p.object(half, func(partition string) error {
		if err := p.count(); err != nil {
			return err
		}
		m := Counters{}
		out[partition] = m
		return p.object(half+" partition "+strconv.Quote(partition), func(instance string) error {
			if err := p.count(); err != nil {
				return err
			}
			t, err := p.dec.Token()
			if err != nil {
				return fmt.Errorf("%w: %v", ErrSyntax, err)
			}
			n, ok := t.(json.Number)
			if !ok {
				return fmt.Errorf("%w: counter of %q is not a number", ErrSyntax, instance)
			}
			c, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: counter %s of %q is not a 64-bit integer", ErrSyntax, n, instance)
			}
			m[instance] = c
			return nil
		})
	})
	return out, err
}

func (p *parser) count() error {
	p.entries++
	if p.entries > MaxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxEntries)
	}
	return nil
}

// object reads a JSON object, calling member for each key with the decoder
// at the key's value, which member must consume. Repeated keys are errors.
func (p *parser) object(what string, member func(key string) error) error {
	t, err := p.dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSyntax, what, err)
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: %s is not an object", ErrSyntax, what)
	}
	seen := map[string]bool{}
	for p.dec.More() {
		t, err := p.dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrSyntax, what, err)
		}
		key, ok := t.(string)
		if !ok {
			return fmt.Errorf("%w: %s: key expected", ErrSyntax, what)
		}
		if seen[key] {
			return fmt.Errorf("%w: %s: repeated key %q", ErrSyntax, what, key)
		}
		seen[key] = true
		if err := member(key); err != nil {
			return err
		}
	}
	if _, err := p.dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("%w: %s: %v", ErrSyntax, what, err)
	}
	return nil
}
