package merge

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// A Rule ranks the concurrent versions of one model's records, after
// deletion and before the default tie-breaks (see the package
// documentation). A nil Rule is the default rule, which ranks all versions
// equal. ColumnRule makes the only other rules, so every device computes the
// same order.
type Rule interface {
	fmt.Stringer
	// value returns what the rule ranks v by.
	value(v Version) value
	// sign is +1 when greater values win, -1 when smaller values win.
	sign() int
}

// ColumnRule returns the rule "prefer the version whose column holds the
// greater value" (preferMax) or "… the smaller value". The column is read
// from the version's Serialized JSON object. Values compare by type first,
// in the order missing or null < boolean < number < string < array <
// object (serialized data that is not a JSON object counts as missing);
// then false < true, numbers by numeric value (exactly, however many
// digits), strings by their UTF-8 bytes, and arrays or objects all equal.
func ColumnRule(column string, preferMax bool) Rule {
	return columnRule{column: column, max: preferMax}
}

type columnRule struct {
	column string
	max    bool
}

func (r columnRule) String() string {
	if r.max {
		return fmt.Sprintf("prefer max of %q", r.column)
	}
	return fmt.Sprintf("prefer min of %q", r.column)
}

func (r columnRule) sign() int {
	if r.max {
		return 1
	}
	return -1
}

func (r columnRule) value(v Version) value {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v.Serialized), &obj); err != nil {
		return value{}
	}
	raw, ok := obj[r.column]
	if !ok || len(raw) == 0 {
		return value{}
	}
	switch raw[0] {
	case 'n':
		return value{}
	case 't':
		return value{kind: kindBool, b: true}
	case 'f':
		return value{kind: kindBool}
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return value{}
		}
		return value{kind: kindString, str: s}
	case '[':
		return value{kind: kindArray}
	case '{':
		return value{kind: kindObject}
	}
	return numberValue(string(raw))
}

// Value kinds, in ranking order.
const (
	kindMissing = iota // missing, null, or not a JSON object
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

// value is a column value reduced to a key that compares lexicographically,
// which makes the order a total preorder on every device.
type value struct {
	kind int
	b    bool
	// A number is sign × 0.digits × 10^exp, digits without leading or
	// trailing zeros; zero has sign 0 and no digits.
	sign   int
	exp    int64
	digits string
	str    string
}

// maxExp bounds decimal exponents so that their sums cannot overflow;
// numbers beyond it compare as if at the bound.
const maxExp = 1 << 40

// numberValue reduces a JSON number (already validated by the decoder).
func numberValue(s string) value {
	v := value{kind: kindNumber, sign: 1}
	if strings.HasPrefix(s, "-") {
		v.sign = -1
		s = s[1:]
	}
	mant, expText := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, expText = s[:i], s[i+1:]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := int64(len(intPart))
	trimmed := strings.TrimLeft(digits, "0")
	point -= int64(len(digits) - len(trimmed))
	digits = strings.TrimRight(trimmed, "0")
	if digits == "" {
		return value{kind: kindNumber}
	}
	if expText != "" {
		e, _ := strconv.ParseInt(expText, 10, 64) // out of range: clamped below
		v.exp = max(min(e, maxExp), -maxExp)
	}
	v.exp += point
	v.digits = digits
	return v
}

// compareValues compares two column values: -1, 0 or +1.
func compareValues(a, b value) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	switch a.kind {
	case kindBool:
		return boolCompare(a.b, b.b)
	case kindString:
		return strings.Compare(a.str, b.str)
	case kindNumber:
		if c := cmp.Compare(a.sign, b.sign); c != 0 || a.sign == 0 {
			return c
		}
		c := cmp.Compare(a.exp, b.exp)
		if c == 0 {
			c = strings.Compare(a.digits, b.digits)
		}
		return c * a.sign
	}
	return 0
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// deletion ranks a version's deletion: hard > soft > none.
func deletion(v Version) int {
	switch {
	case v.HardDeleted:
		return 2
	case v.Deleted:
		return 1
	}
	return 0
}

// ranked is a version with its rule value computed once.
type ranked struct {
	v   Version
	val value
}

// order compares two versions under rule: deletion, then the rule, then
// Counter, then Instance. It is a total order on versions with distinct
// dots.
func order(a, b ranked, rule Rule) int {
	if c := cmp.Compare(deletion(a.v), deletion(b.v)); c != 0 {
		return c
	}
	if rule != nil {
		if c := compareValues(a.val, b.val) * rule.sign(); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(a.v.Counter, b.v.Counter); c != 0 {
		return c
	}
	return strings.Compare(a.v.Instance, b.v.Instance)
}

// arrange makes a state of a set of versions with distinct dots. The head
// is the greatest version under the order among those that are not
// hard-deleted, or among all if all are; the rest, sorted by dot, are the
// siblings.
func arrange(vs []Version, history map[string]int64, rule Rule) State {
	if len(vs) == 1 {
		// Nothing to rank: the rule's value (a JSON field) is not read.
		return State{Head: vs[0], History: history}
	}
	live := false
	for _, v := range vs {
		if !v.HardDeleted {
			live = true
			break
		}
	}
	best := -1
	var bestRank ranked
	for i, v := range vs {
		if live && v.HardDeleted {
			continue
		}
		r := ranked{v: v}
		if rule != nil {
			r.val = rule.value(v)
		}
		if best < 0 || order(r, bestRank, rule) > 0 {
			best, bestRank = i, r
		}
	}
	st := State{Head: vs[best], History: history}
	if len(vs) > 1 {
		st.Siblings = make([]Version, 0, len(vs)-1)
		for i, v := range vs {
			if i != best {
				st.Siblings = append(st.Siblings, v)
			}
		}
		sortVersions(st.Siblings)
	}
	return st
}
