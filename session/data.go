package session

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// dataFields checks that a record's data is what the app row will be
// written from: one JSON object, nothing after it, no key twice or with a
// NUL in it, nested no deeper than maxJSONDepth. It returns a lookup of
// the object's top-level strings and numbers (as the JSON spells them), or
// why the data is refused.
//
// Almost every record's data is a plain object: quickFields checks and
// reads those in one pass, without decoding the values it is not asked
// for. Anything it is not sure of goes to decodedFields, which decodes the
// whole object and says what is wrong with it.
func dataFields(serialized string) (func(string) (string, bool), string) {
	if f, ok := quickFields(serialized); ok {
		return f.get, ""
	}
	return decodedFields(serialized)
}

// decodedFields is dataFields by decoding the whole object.
func decodedFields(serialized string) (func(string) (string, bool), string) {
	fields := map[string]any{}
	dec := json.NewDecoder(strings.NewReader(serialized))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		return nil, "its data is not a JSON object"
	}
	// SQLite reads the data when it writes the app row: nothing may
	// follow the object, and it may not nest deeper than SQLite reads.
	if _, err := dec.Token(); err != io.EOF {
		return nil, "its data is not a JSON object (something follows it)"
	}
	depth, keys := jsonShape(serialized)
	if depth > maxJSONDepth {
		return nil, fmt.Sprintf("its data nests deeper than %d levels", maxJSONDepth)
	}
	// Go keeps the last of a repeated key, SQLite the first: the fields
	// checked must be those the app row gets.
	if keys != len(fields) {
		return nil, "its data repeats a key"
	}
	// SQLite matches a key only up to an escaped NUL ("a\u0000b" is "a"
	// to json_extract): such a key would be another field than the one
	// checked here.
	for k := range fields {
		if strings.IndexByte(k, 0) >= 0 {
			return nil, "its data has a key with a NUL character (\\u0000)"
		}
	}
	return func(col string) (string, bool) {
		switch v := fields[col].(type) {
		case string:
			return v, true
		case json.Number:
			return v.String(), true
		}
		return "", false
	}, ""
}

// members are the top-level members of a JSON object.
type members []member

// member is one member: its key as decoded, its value as written.
type member struct{ key, value string }

// get returns the member col if its value is a string (decoded) or a
// number (as written), as decodedFields does.
func (m members) get(col string) (string, bool) {
	for _, e := range m {
		if e.key != col {
			continue
		}
		v := e.value
		switch {
		case v[0] == '"':
			return jsonString(v), true
		case v[0] == '-' || v[0] >= '0' && v[0] <= '9':
			return v, true
		}
		return "", false
	}
	return "", false
}

// maxQuickMembers is the most members quickFields compares pairwise for a
// repeated key; objects with more go to decodedFields.
const maxQuickMembers = 64

// quickFields reads the members of s if s is valid JSON, an object with
// at most maxQuickMembers members, no key twice or with a NUL, and nested
// no deeper than maxJSONDepth; ok is false otherwise (and for anything
// else it does not handle), and decodedFields decides.
func quickFields(s string) (m members, ok bool) {
	if !json.Valid(unsafe.Slice(unsafe.StringData(s), len(s))) {
		return m, false
	}
	i := skipSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		return m, false
	}
	i = skipSpace(s, i+1)
	if s[i] == '}' {
		return m, skipSpace(s, i+1) == len(s)
	}
	for {
		// s is valid JSON: a member is a string, a colon and a value,
		// followed by a comma or the closing brace.
		end := stringEnd(s, i)
		key := jsonString(s[i:end])
		i = skipSpace(s, end)
		i = skipSpace(s, i+1) // the colon
		vend, deep := valueEnd(s, i)
		if deep > maxJSONDepth-1 || len(m) == maxQuickMembers {
			return m, false
		}
		if strings.IndexByte(key, 0) >= 0 {
			return m, false
		}
		for _, e := range m {
			if e.key == key {
				return m, false
			}
		}
		if m == nil {
			m = make(members, 0, 16)
		}
		m = append(m, member{key, s[i:vend]})
		i = skipSpace(s, vend)
		if s[i] == '}' {
			return m, skipSpace(s, i+1) == len(s)
		}
		i = skipSpace(s, i+1) // the comma
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string that starts at
// s[i].
func stringEnd(s string, i int) int {
	for i++; s[i] != '"'; i++ {
		if s[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd returns the index just past the JSON value that starts at s[i]
// and how deep its arrays and objects nest.
func valueEnd(s string, i int) (end, depth int) {
	switch s[i] {
	case '"':
		return stringEnd(s, i), 0
	case '{', '[':
		level := 0
		for ; ; i++ {
			switch s[i] {
			case '"':
				i = stringEnd(s, i) - 1
			case '{', '[':
				level++
				depth = max(depth, level)
			case '}', ']':
				level--
				if level == 0 {
					return i + 1, depth
				}
			}
		}
	}
	for i < len(s) && !strings.ContainsRune(",}] \t\n\r", rune(s[i])) {
		i++
	}
	return i, 0
}

// jsonString decodes the valid JSON string literal q as encoding/json does
// (invalid UTF-8 becomes U+FFFD).
func jsonString(q string) string {
	inner := q[1 : len(q)-1]
	if !strings.ContainsRune(inner, '\\') && utf8.ValidString(inner) {
		return inner
	}
	var v string
	if err := json.Unmarshal([]byte(q), &v); err != nil {
		return "" // not reached: q is valid
	}
	return v
}

// maxJSONDepth is the deepest nesting of a record's data that is accepted:
// SQLite's JSON functions read up to 1000 levels.
const maxJSONDepth = 500

// jsonShape returns the deepest nesting of arrays and objects in the JSON
// text s, which must be valid, and the number of members of its top-level
// object (a repeated key counts each time).
func jsonShape(s string) (depth, keys int) {
	level := 0
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case in:
		case c == '{' || c == '[':
			level++
			depth = max(depth, level)
		case c == '}' || c == ']':
			level--
		case c == ':' && level == 1:
			keys++
		}
	}
	return depth, keys
}
