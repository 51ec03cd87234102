package store

import (
	"fmt"
	"strings"

	"github.com/morango-sync/morango/profile"
)

// syncedColumns returns the columns of the model's table that are synced,
// in table order.
func syncedColumns(t *tableInfo, m *profile.Model) []string {
	var cols []string
	for _, c := range t.Columns {
		if m.Synced(c.Name) {
			cols = append(cols, c.Name)
		}
	}
	return cols
}

// jsonPath returns the JSON path of a top-level key. SQLite reads a
// quoted label's backslashes as JSON escapes: a backslash and a quote of
// the key are escaped.
func jsonPath(key string) string {
	return literal(jsonPathText(key))
}

// jsonPathText is jsonPath's text, for a statement's argument.
func jsonPathText(key string) string {
	return `$."` + pathEscaper.Replace(key) + `"`
}

var pathEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// maxFunctionArgs keeps json_object and json_set calls under SQLite's limit
// on function arguments.
const maxFunctionArgs = 100

// jsonObjectSQL returns an expression building the JSON object of the
// columns of the row aliased alias, keys in the order of cols: the same
// text as jsonSetSQL over an empty object but for an infinite REAL (see
// respelledSQL), built without looking up a path for each column.
func jsonObjectSQL(alias string, cols []string) string {
	return jsonObjectOf(alias, cols, columnValue)
}

// jsonLoggedSQL is jsonObjectSQL for a row kept for people to read
// (morango_conflictlog), which may hold a value a record cannot: a BLOB
// is written as its SQL literal (X'0102'), where JSON would refuse it.
func jsonLoggedSQL(alias string, cols []string) string {
	return jsonObjectOf(alias, cols, func(alias, c string) string {
		v := columnValue(alias, c)
		return fmt.Sprintf("iif(typeof(%[1]s) = 'blob', quote(%[1]s), %[1]s)", v)
	})
}

// columnValue is the column c of the row aliased alias.
func columnValue(alias, c string) string {
	return alias + "." + quote(c)
}

func jsonObjectOf(alias string, cols []string, value func(alias, c string) string) string {
	first := cols[:min(len(cols), maxFunctionArgs/2)]
	var b strings.Builder
	b.WriteString("json_object(")
	for i, c := range first {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s, %s", literal(c), value(alias, c))
	}
	b.WriteString(")")
	return jsonSetOf(b.String(), alias, cols[len(first):], value)
}

// jsonSetSQL returns an expression setting each column of the row aliased
// alias into the JSON object base: keys the row lacks are kept, so values
// written by a newer app version survive.
func jsonSetSQL(base, alias string, cols []string) string {
	return jsonSetOf(base, alias, cols, columnValue)
}

func jsonSetOf(base, alias string, cols []string, value func(alias, c string) string) string {
	return jsonEditSQL("json_set", base, cols, func(c string) string { return value(alias, c) })
}

// jsonEditSQL returns an expression applying the JSON function fn
// (json_set, json_replace) to base with each key of cols and its value,
// in calls of at most maxFunctionArgs arguments.
func jsonEditSQL(fn, base string, cols []string, value func(c string) string) string {
	expr := base
	for start := 0; start < len(cols); start += maxFunctionArgs / 2 {
		end := min(start+maxFunctionArgs/2, len(cols))
		var b strings.Builder
		b.WriteString(fn + "(" + expr)
		for _, c := range cols[start:end] {
			fmt.Fprintf(&b, ", %s, %s", jsonPath(c), value(c))
		}
		b.WriteString(")")
		expr = b.String()
	}
	return expr
}

// respelledSQL returns the JSON object base with each of the keys cols it
// holds set to its own value, spelt as jsonSetSQL spells the values of a
// row: compared with jsonSetSQL over base, it tells a change of a value
// from another spelling of the same one (json_object writes an infinite
// REAL 9.0e+999, json_set 9e999; another device may escape text
// differently).
func respelledSQL(base string, cols []string) string {
	return jsonEditSQL("json_replace", base, cols, func(c string) string {
		return "json_extract(" + base + ", " + jsonPath(c) + ")"
	})
}

// templateSQL turns a partition or source-id template into an SQL
// expression over the row aliased alias. ${id} becomes idExpr. The
// expression is NULL when a referenced column is NULL.
func templateSQL(tmpl, alias, idExpr string) string {
	return templateExpr(tmpl, func(name string) (string, bool) {
		if name == "id" {
			return idExpr, true
		}
		return "CAST(" + alias + "." + quote(name) + " AS TEXT)", true
	}, func(b *strings.Builder, c byte) { b.WriteByte(c) })
}

// templateExpr builds an SQL concatenation from a template: field returns
// the expression of ${name}, or false to have it written as literal text
// (its returned string); lit writes one literal byte of the template.
// "$$" is a literal "$".
func templateExpr(tmpl string, field func(name string) (string, bool), lit func(*strings.Builder, byte)) string {
	var parts []string
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			parts = append(parts, literal(text.String()))
			text.Reset()
		}
	}
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '$' && i+1 < len(tmpl) {
			switch {
			case tmpl[i+1] == '$':
				lit(&text, '$')
				i++
				continue
			case tmpl[i+1] == '{':
				if end := strings.IndexByte(tmpl[i+2:], '}'); end >= 0 {
					if expr, ok := field(tmpl[i+2 : i+2+end]); ok {
						flush()
						parts = append(parts, expr)
					} else {
						text.WriteString(expr)
					}
					i += 2 + end
					continue
				}
			}
		}
		lit(&text, tmpl[i])
	}
	flush()
	if len(parts) == 0 {
		return "''"
	}
	return "(" + strings.Join(parts, " || ") + ")"
}
