package store

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StatementTime is the time spent in one statement of the store, or in
// one step of its work, summed over its runs since the profile was last
// taken.
type StatementTime struct {
	// Statement is the statement's text with its whitespace folded, cut
	// at 160 bytes, or the name of a step ("commit", "import: merge").
	Statement string  `json:"statement"`
	Runs      int64   `json:"runs"`
	Seconds   float64 `json:"seconds"`
}

// stmtProfile sums statement times while profiling is on. It is for
// finding where a stage spends its time (morango bench --statements);
// off, a statement pays one atomic load.
var stmtProfile struct {
	on     atomic.Bool
	mu     sync.Mutex
	totals map[string]*StatementTime
}

// ProfileStatements turns the statement profile on or off.
func ProfileStatements(on bool) { stmtProfile.on.Store(on) }

// TakeStatementProfile returns the statement times summed since the last
// call, the longest first, and starts the sums again.
func TakeStatementProfile() []StatementTime {
	stmtProfile.mu.Lock()
	defer stmtProfile.mu.Unlock()
	var l []StatementTime
	for _, t := range stmtProfile.totals {
		l = append(l, *t)
	}
	stmtProfile.totals = nil
	slices.SortFunc(l, func(a, b StatementTime) int { return cmp.Compare(b.Seconds, a.Seconds) })
	return l
}

// since adds the time since start to the statement or step q.
func since(q string, start time.Time) {
	if !stmtProfile.on.Load() {
		return
	}
	d := time.Since(start)
	k := strings.Join(strings.Fields(q), " ")
	if len(k) > 160 {
		k = k[:160]
	}
	stmtProfile.mu.Lock()
	defer stmtProfile.mu.Unlock()
	if stmtProfile.totals == nil {
		stmtProfile.totals = map[string]*StatementTime{}
	}
	t := stmtProfile.totals[k]
	if t == nil {
		t = &StatementTime{Statement: k}
		stmtProfile.totals[k] = t
	}
	t.Runs++
	t.Seconds += d.Seconds()
}
