package store

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Record is one store row with its history, as it travels between devices:
// the original's buffer record with its record-max-counter list.
type Record struct {
	ID                string
	Profile           string
	ModelName         string
	Partition         string
	SourceID          string
	Serialized        string
	Deleted           bool
	HardDeleted       bool
	LastSavedInstance string
	LastSavedCounter  int64
	// Conflicting holds the record's concurrent versions that lost
	// (conflicting_serialized_data), as encoded by the merge package.
	Conflicting string
	SelfRefFK   string
	// History lists, per instance, the highest counter of the versions this
	// record's state includes, sorted by instance.
	History []HistoryEntry
	// Unvouched lists versions of an incoming record whose data the
	// sender's certificate does not vouch for (their data lies outside what
	// it may write: versions it relays from devices that may). Import.Add
	// merges such a record only if this device's history of it already
	// covers each of them: a merge keeps a version its history covers only
	// if it holds that very version, so they bring no data. UnvouchedWhy
	// says why, for the refusal otherwise. Never stored.
	Unvouched    []HistoryEntry
	UnvouchedWhy string

	rowid int64 // of the local store row, when read for a merge
}

// HistoryEntry is one record-max counter.
type HistoryEntry struct {
	Instance string
	Counter  int64
}

// historyMap returns the history as a map.
func (r *Record) historyMap() map[string]int64 {
	m := make(map[string]int64, len(r.History))
	for _, h := range r.History {
		m[h.Instance] = h.Counter
	}
	return m
}

func historyList(m map[string]int64) []HistoryEntry {
	l := make([]HistoryEntry, 0, len(m))
	for i, c := range m {
		l = append(l, HistoryEntry{i, c})
	}
	sort.Slice(l, func(a, b int) bool { return l[a].Instance < l[b].Instance })
	return l
}

// parseHistory parses the "instance:counter,..." text the queries build
// with group_concat.
func parseHistory(s string) ([]HistoryEntry, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	l := make([]HistoryEntry, 0, len(parts))
	for _, p := range parts {
		inst, cs, ok := strings.Cut(p, ":")
		if !ok {
			return nil, fmt.Errorf("bad history entry %q", p)
		}
		c, err := strconv.ParseInt(cs, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad history entry %q: %w", p, err)
		}
		l = append(l, HistoryEntry{inst, c})
	}
	sort.Slice(l, func(a, b int) bool { return l[a].Instance < l[b].Instance })
	return l, nil
}

// recordColumns are the store columns a Record is read from, followed by
// its history; rowAlias names the store table in the query.
func recordColumns(alias string) string {
	return fmt.Sprintf(`%[1]s.id, %[1]s.profile, %[1]s.model_name, %[1]s.partition, %[1]s.source_id, %[1]s.serialized,
		%[1]s.deleted, %[1]s.hard_deleted, %[1]s.last_saved_instance, %[1]s.last_saved_counter,
		%[1]s.conflicting_serialized_data, %[1]s._self_ref_fk,
		(SELECT group_concat(h.instance_id || ':' || h.counter, ',') FROM morango_recordmaxcounter h WHERE h.store_model_id = %[1]s.id)`, alias)
}

type scanner interface{ Scan(dest ...any) error }

func scanRecord(sc scanner, r *Record) error {
	var hist *string
	err := sc.Scan(&r.ID, &r.Profile, &r.ModelName, &r.Partition, &r.SourceID, &r.Serialized,
		&r.Deleted, &r.HardDeleted, &r.LastSavedInstance, &r.LastSavedCounter,
		&r.Conflicting, &r.SelfRefFK, &hist)
	if err != nil {
		return err
	}
	r.History = nil
	if hist != nil {
		r.History, err = parseHistory(*hist)
	}
	return err
}

// prefixRange returns the bounds of the partitions that start with prefix:
// lo <= partition < hi, with hi == "" meaning no upper bound.
func prefixRange(prefix string) (lo, hi string) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return prefix, string(b[:i+1])
		}
	}
	return prefix, ""
}

// rangeSQL returns a condition selecting partitions under prefix, with its
// arguments. It uses the partition index and needs no LIKE escaping.
func rangeSQL(col, prefix string) (string, []any) {
	lo, hi := prefixRange(prefix)
	switch {
	case lo == "":
		return "true", nil
	case hi == "":
		return col + " >= ?", []any{lo}
	}
	return col + " >= ? AND " + col + " < ?", []any{lo, hi}
}

// normalizeFilter removes prefixes that lie under another prefix of the
// filter and sorts the rest, so that each partition matches one prefix.
func normalizeFilter(filter []string) []string {
	sorted := append([]string(nil), filter...)
	sort.Strings(sorted)
	var out []string
	for _, p := range sorted {
		if len(out) > 0 && strings.HasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}
