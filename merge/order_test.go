package merge

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestColumnValues checks the ranking of column values: each serialized
// object ranks strictly below the next one, except where marked equal.
func TestColumnValues(t *testing.T) {
	ascending := []struct {
		ser   string
		equal bool // ranks equal to the previous one
	}{
		{ser: `not json`},
		{ser: `[1,2]`, equal: true}, // not an object
		{ser: `{}`, equal: true},    // missing
		{ser: `{"v":null}`, equal: true},
		{ser: `{"v":false}`},
		{ser: `{"v":true}`},
		{ser: `{"v":-1e400}`},
		{ser: `{"v":-12}`},
		{ser: `{"v":-1.5}`},
		{ser: `{"v":-1}`},
		{ser: `{"v":-0.001}`},
		{ser: `{"v":0}`},
		{ser: `{"v":-0}`, equal: true},
		{ser: `{"v":0.0e9}`, equal: true},
		{ser: `{"v":1e-99999999999999999999}`},
		{ser: `{"v":0.5}`},
		{ser: `{"v":1}`},
		{ser: `{"v":1.0}`, equal: true},
		{ser: `{"v":100e-2}`, equal: true},
		{ser: `{"v":0.1E1}`, equal: true},
		{ser: `{"v":9007199254740992}`},
		{ser: `{"v":9007199254740993}`},
		{ser: `{"v":9007199254740993.5}`},
		{ser: `{"v":1e400}`},
		{ser: `{"v":123456789012345678901234567890e400}`},
		{ser: `{"v":1e99999999999999999999}`},
		{ser: `{"v":""}`},
		{ser: `{"v":"A"}`},
		{ser: `{"v":"a"}`},
		{ser: `{"v":"\u0061b"}`},
		{ser: `{"v":"é"}`},
		{ser: `{"v":[]}`},
		{ser: `{"v":[0]}`, equal: true},
		{ser: `{"v":{}}`},
		{ser: `{"v":{"a":1}}`, equal: true},
		{ser: `{"v":1,"v":{"b":2}}`, equal: true}, // the last duplicate key counts
	}
	rule := ColumnRule("v", true).(columnRule)
	for i := 1; i < len(ascending); i++ {
		a := rule.value(Version{Serialized: ascending[i-1].ser})
		b := rule.value(Version{Serialized: ascending[i].ser})
		want := -1
		if ascending[i].equal {
			want = 0
		}
		if got := compareValues(a, b); got != want {
			t.Errorf("compare(%s, %s) = %d, want %d", ascending[i-1].ser, ascending[i].ser, got, want)
		}
		if got := compareValues(b, a); got != -want {
			t.Errorf("compare(%s, %s) = %d, want %d", ascending[i].ser, ascending[i-1].ser, got, -want)
		}
	}
	// The order is a total preorder: sorting any permutation gives the same
	// ranks.
	vals := make([]value, len(ascending))
	for i, a := range ascending {
		vals[i] = rule.value(Version{Serialized: a.ser})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		p := slices.Clone(vals)
		rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
		slices.SortStableFunc(p, compareValues)
		for i := 1; i < len(p); i++ {
			if compareValues(p[i-1], p[i]) > 0 {
				t.Fatal("sorted values out of order")
			}
		}
	}
}

func TestOrder(t *testing.T) {
	// Deletion first, then the rule, then Counter, then Instance.
	ascending := []Version{
		ver("z", 1, `{"v":9}`),
		ver("a", 2, `{"v":9}`),
		ver("b", 2, `{"v":9}`),
		ver("a", 1, `{"v":10}`),
		deleted("z", 9, `{"v":1}`),
		deleted("a", 1, `{"v":2}`),
		hard("a", 1),
		hard("b", 1),
		hard("a", 2),
	}
	rule := ColumnRule("v", true)
	for i := 1; i < len(ascending); i++ {
		a := ranked{ascending[i-1], rule.value(ascending[i-1])}
		b := ranked{ascending[i], rule.value(ascending[i])}
		if order(a, b, rule) >= 0 || order(b, a, rule) <= 0 {
			t.Errorf("%v should rank below %v", ascending[i-1], ascending[i])
		}
	}
	// Without a rule the column is ignored.
	if order(ranked{v: ver("a", 1, `{"v":10}`)}, ranked{v: ver("a", 2, `{"v":9}`)}, nil) >= 0 {
		t.Error("default rule reads the column")
	}
	// Prefer min reverses the rule only.
	minRule := ColumnRule("v", false)
	lo := ranked{ver("a", 1, `{"v":1}`), minRule.value(ver("a", 1, `{"v":1}`))}
	hi := ranked{ver("b", 2, `{"v":2}`), minRule.value(ver("b", 2, `{"v":2}`))}
	if order(lo, hi, minRule) <= 0 {
		t.Error("prefer min: smaller value should win")
	}
	if got := ColumnRule("v", false).String(); got != `prefer min of "v"` {
		t.Errorf("String = %s", got)
	}
}
