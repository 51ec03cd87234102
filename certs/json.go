package certs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// This file holds the two JSON dialects the package needs: Python's
// json.dumps output (which certificates are signed over) and a strict object
// reader for untrusted input that keeps member order and refuses duplicates.

// writePyString appends s to b as Python's json.dumps writes a string with
// its defaults: quotes, backslash escapes for \" \\ \n \r \t \b \f, and
// \uXXXX (lower-case hex, surrogate pairs above U+FFFF) for every other
// character outside printable ASCII. Invalid UTF-8 is written as U+FFFD.
func writePyString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	u := func(r rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[r>>12&0xf])
		b.WriteByte(hex[r>>8&0xf])
		b.WriteByte(hex[r>>4&0xf])
		b.WriteByte(hex[r&0xf])
	}
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r >= 0x20 && r < 0x7f:
				b.WriteByte(byte(r))
			case r < 0x10000:
				u(r)
			default:
				r -= 0x10000
				u(0xd800 + r>>10)
				u(0xdc00 + r&0x3ff)
			}
		}
	}
	b.WriteByte('"')
}

// pyString returns s as Python's json.dumps writes it.
func pyString(s string) string {
	var b strings.Builder
	writePyString(&b, s)
	return b.String()
}

// param is one scope parameter, in the order it is written.
type param struct{ key, value string }

// dumpParams returns the parameters as Python's json.dumps writes a dict of
// strings in insertion order: {"k1": "v1", "k2": "v2"}.
func dumpParams(ps []param) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		writePyString(&b, p.key)
		b.WriteString(": ")
		writePyString(&b, p.value)
	}
	b.WriteByte('}')
	return b.String()
}

// member is one name and value of a JSON object.
type member struct {
	name  string
	value json.RawMessage
}

// readObject decodes data as exactly one JSON object and returns its members
// in document order. Duplicate names and trailing data are errors: the
// original's json.loads would keep the last duplicate silently, and a reader
// that keeps another one would see a different value.
func readObject(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var ms []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("object member without a name")
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("member %q: %w", name, err)
		}
		ms = append(ms, member{name, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if err := expectEOF(dec); err != nil {
		return nil, err
	}
	return ms, nil
}

// expectEOF reports an error if dec holds anything after its value.
func expectEOF(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// jsonKind names the JSON type of a raw value for error messages.
func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// decodeString decodes a raw value that must be a JSON string (not null).
func decodeString(v json.RawMessage) (string, error) {
	if k := jsonKind(v); k != "a string" {
		return "", fmt.Errorf("is %s, not a string", k)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", err
	}
	return s, nil
}

// parseParams parses scope parameters: a JSON object whose values are all
// strings. It keeps the members' order and refuses duplicates. The original
// would turn other values into Python's str() of them ("True", "1.0");
// parameters made by the original are always strings, so other values are
// refused here rather than guessed at.
func parseParams(s string) ([]param, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("scope params: invalid UTF-8: %w", ErrMalformed)
	}
	ms, err := readObject([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("scope params %.80q: %v: %w", s, err, ErrMalformed)
	}
	ps := make([]param, 0, len(ms))
	for _, m := range ms {
		v, err := decodeString(m.value)
		if err != nil {
			return nil, fmt.Errorf("scope param %q %v: %w", m.name, err, ErrMalformed)
		}
		ps = append(ps, param{m.name, v})
	}
	return ps, nil
}

// paramMap returns the parameters as a map.
func paramMap(ps []param) map[string]string {
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.key] = p.value
	}
	return m
}
