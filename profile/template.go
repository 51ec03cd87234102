package profile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/morango-sync/morango/ids"
)

// A template is literal text with ${name} references; "$$" is a literal "$".

// part is one piece of a parsed template: literal text, or a reference.
type part struct {
	literal string
	ref     string // the referenced name; "" for literal text
}

// isIdent reports whether s is a letter or underscore followed by letters,
// digits and underscores (ASCII).
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// isLowerIdent is isIdent without upper-case letters.
func isLowerIdent(s string) bool {
	return isIdent(s) && strings.ToLower(s) == s
}

// parseTemplate splits a model template into literal text and ${column}
// references. A "$" must start "$$" or a complete ${column} reference.
func parseTemplate(t string) ([]part, error) {
	return parse(t, false)
}

// parse splits a template. With bare set, $name is accepted as well as
// ${name}, as in the filter templates of scope definitions (Python's
// string.Template syntax, which the original uses for them).
func parse(t string, bare bool) ([]part, error) {
	var parts []part
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, part{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(t); i++ {
		if t[i] != '$' {
			lit.WriteByte(t[i])
			continue
		}
		rest := t[i+1:]
		switch {
		case strings.HasPrefix(rest, "$"):
			lit.WriteByte('$')
			i++
		case strings.HasPrefix(rest, "{"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("unterminated reference at offset %d of %q: close it with }", i, t)
			}
			name := rest[1:end]
			if name == "" {
				return nil, fmt.Errorf("empty reference ${} at offset %d of %q", i, t)
			}
			if !isIdent(name) {
				return nil, fmt.Errorf("bad reference ${%s} in %q: a name is letters, digits and _", name, t)
			}
			flush()
			parts = append(parts, part{ref: name})
			i += end + 1
		case bare && rest != "" && isIdent(rest[:1]):
			n := 1
			for n < len(rest) && isIdent(rest[:n+1]) {
				n++
			}
			flush()
			parts = append(parts, part{ref: rest[:n]})
			i += n
		default:
			return nil, fmt.Errorf("lone $ at offset %d of %q: write ${name} for a reference, $$ for a dollar sign", i, t)
		}
	}
	flush()
	return parts, nil
}

// refs returns the names a template references, in order of first use.
func refs(t string) []string {
	parts, _ := parseTemplate(t)
	var names []string
	for _, p := range parts {
		if p.ref != "" && !slices.Contains(names, p.ref) {
			names = append(names, p.ref)
		}
	}
	return names
}

// render substitutes a model template with a row's values; get returns
// ok=false for a missing or NULL value. With keepID, ${id} stays as the
// literal placeholder; without, it is an error (a source id cannot depend
// on the id computed from it).
func render(t string, keepID bool, get func(column string) (string, bool)) (string, error) {
	return renderID(t, ids.IDPlaceholder, keepID, get)
}

// renderID substitutes a model template with a row's values (get as for
// render), and each ${id} with id, or an error without withID. Only the
// template's own ${id} takes the id: a value or a literal text that spells
// "${id}" stays as it is, as it does where serialization renders the
// partition in SQL.
func renderID(t, id string, withID bool, get func(column string) (string, bool)) (string, error) {
	parts, err := parseTemplate(t)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		switch p.ref {
		case "":
			b.WriteString(p.literal)
		case "id":
			if !withID {
				return "", fmt.Errorf("%q references ${id}, which is computed from it", t)
			}
			b.WriteString(id)
		default:
			v, ok := get(p.ref)
			if !ok {
				return "", fmt.Errorf("column %s is missing or NULL", p.ref)
			}
			b.WriteString(v)
		}
	}
	return b.String(), nil
}
