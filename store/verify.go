package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/morango-sync/morango/ids"
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
)

// VerifyKind names a kind of problem Verify reports.
type VerifyKind string

// The kinds of problem Verify reports. Unless marked "notice", each is an
// error: the database breaks an invariant of the engine.
const (
	// The SQLite file: PRAGMA integrity_check, foreign_key_check.
	VerifyIntegrity  VerifyKind = "integrity"
	VerifyForeignKey VerifyKind = "foreign_key"
	// The sync tables' version; the installed profile and the app's tables.
	VerifySchema  VerifyKind = "schema"
	VerifyProfile VerifyKind = "profile"
	// Exactly one current instance, of the current database id.
	VerifyInstance VerifyKind = "instance"
	// Change tracking: the triggers on every table of the profile, and no
	// leftover row in morango_applying (which switches them off).
	VerifyTriggers        VerifyKind = "triggers"
	VerifyTrackingStopped VerifyKind = "tracking_stopped"

	// Store records: their profile, model, id and partition.
	VerifyWrongProfile      VerifyKind = "wrong_profile"
	VerifyUnknownModel      VerifyKind = "unknown_model" // notice
	VerifyBadID             VerifyKind = "bad_id"
	VerifyIDMismatch        VerifyKind = "id_mismatch"
	VerifyPartitionMismatch VerifyKind = "partition_mismatch"
	VerifyPartitionDrift    VerifyKind = "partition_drift" // notice
	VerifyBadData           VerifyKind = "bad_data"

	// Versions, histories and counters.
	VerifyBadVersion       VerifyKind = "bad_version"
	VerifyHeadNotInHistory VerifyKind = "head_not_in_history"
	VerifyBadHistory       VerifyKind = "bad_history"
	VerifyOrphanHistory    VerifyKind = "orphan_history"
	VerifyBadSiblings      VerifyKind = "bad_siblings"
	// Versions of an instance above what this database claims to hold of
	// it: an error for this device's own instance, a notice for others.
	VerifyUnclaimed     VerifyKind = "unclaimed_versions"
	VerifyCounterBehind VerifyKind = "counter_behind"

	// App rows against store records.
	VerifyMissingRecord VerifyKind = "missing_record"
	VerifyModelMismatch VerifyKind = "model_mismatch"
	VerifyDataMismatch  VerifyKind = "data_mismatch"
	VerifyDeletedHasRow VerifyKind = "deleted_has_row"
	VerifyMissingAppRow VerifyKind = "missing_app_row"
	// Work waiting for the engine, not errors.
	VerifyUnserialized   VerifyKind = "unserialized"   // notice
	VerifyUnserializable VerifyKind = "unserializable" // notice
	VerifyPending        VerifyKind = "pending"        // notice
)

// Severity says whether a problem is an error or a notice.
type Severity string

// Severities.
const (
	// SeverityError: the database breaks an invariant.
	SeverityError Severity = "error"
	// SeverityNotice: work waiting for the engine, or a state that is
	// allowed but worth knowing about.
	SeverityNotice Severity = "notice"
)

// VerifyProblem is one problem Verify found.
type VerifyProblem struct {
	Kind     VerifyKind `json:"kind"`
	Severity Severity   `json:"severity"`
	// Model and ID name the record or app row, when the problem has one.
	// A problem that sums up several rows has Count > 1 and names one of
	// them as an example.
	Model string `json:"model,omitempty"`
	ID    string `json:"id,omitempty"`
	Count int64  `json:"count,omitempty"`
	// Problem says what is wrong, Fix what to do about it.
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

// VerifyResult sums up a verification.
type VerifyResult struct {
	Path    string `json:"path"`
	Profile string `json:"profile"`
	// Records and AppRows count the store records and the rows of the
	// profile's tables that were checked.
	Records int64 `json:"records"`
	AppRows int64 `json:"app_rows"`
	Errors  int64 `json:"errors"`
	Notices int64 `json:"notices"`
}

// OK reports whether no error was found (notices allowed).
func (r *VerifyResult) OK() bool { return r.Errors == 0 }

// Verify checks the invariants of the database at path and calls fn for
// every problem found, in a fixed order of checks. It opens the file
// read-only (SQLite's mode=ro and query_only) and reads one consistent
// snapshot; it never writes the database file. On a WAL database SQLite
// may create the -wal and -shm files, as any reader does.
//
// Every check is a set-based query that streams the offending rows, so
// memory does not grow with the store. An error is returned only when
// verification itself could not run; what is wrong with the database is
// reported through fn. If fn returns an error, Verify stops with it.
func Verify(ctx context.Context, path string, fn func(VerifyProblem) error) (*VerifyResult, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, withHint(fmt.Errorf("verify %s: %w", path, err), "check the path given with --db")
	}
	registerFunctions()
	u := (&url.URL{Scheme: "file", OmitHost: true, Path: abs}).String()
	h, err := sql.Open("sqlite", u+"?mode=ro&_query_only=1&_pragma=busy_timeout(30000)")
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	defer h.Close()
	h.SetMaxOpenConns(1)
	tx, err := h.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	defer tx.Rollback()
	v := &verifier{tx: tx, fn: fn, res: &VerifyResult{Path: abs}, path: abs}
	if err := v.run(ctx); err != nil {
		return v.res, err
	}
	return v.res, nil
}

type verifier struct {
	tx   *sql.Tx
	fn   func(VerifyProblem) error
	res  *VerifyResult
	path string

	p      *profile.Profile
	schema schemaInfo
	// models are the profile's models whose tables match it.
	models []*profile.Model
	// current is this database's current instance ("" if unknown),
	// counter its counter, ownSiblingsMax the highest counter of its
	// versions seen among the records' conflicting versions.
	current        string
	counter        int64
	ownSiblingsMax int64
}

func (v *verifier) report(p VerifyProblem) error {
	if p.Severity == "" {
		p.Severity = SeverityError
	}
	if p.Severity == SeverityError {
		v.res.Errors++
	} else {
		v.res.Notices++
	}
	return v.fn(p)
}

func (v *verifier) run(ctx context.Context) error {
	ok, err := v.integrity(ctx)
	if err != nil || !ok {
		return err
	}
	if ok, err = v.schemaVersion(ctx); err != nil || !ok {
		return err
	}
	steps := []func(context.Context) error{
		v.loadProfile,
		v.foreignKeys,
		v.instance,
		v.tracking,
		v.recordProfiles,
		v.unknownModels,
		v.identities,
		v.data,
		v.versions,
		v.heads,
		v.histories,
		v.orphans,
		v.siblings,
		v.unclaimed,
		v.counterBehind,
		v.appRows,
		v.missingAppRows,
		v.waiting,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// each runs q and calls fn after scanning each row into dest.
func (v *verifier) each(ctx context.Context, q string, args []any, dest []any, fn func() error) error {
	rows, err := v.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("verify: %w (in %.160s)", err, strings.TrimSpace(q))
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if err := fn(); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

const restoreFix = "restore the database from a backup (or, if there is none, from another device: a fresh 'morango init' and an import)"

// integrity runs PRAGMA integrity_check. A damaged file ends the
// verification: nothing else it says can be trusted.
func (v *verifier) integrity(ctx context.Context) (bool, error) {
	fix := fmt.Sprintf("restore the file from a backup; without one, copy out what is readable with: sqlite3 %s .recover", v.path)
	var lines []string
	rows, err := v.tx.QueryContext(ctx, `PRAGMA integrity_check`)
	if err == nil {
		for rows.Next() {
			var l string
			if err = rows.Scan(&l); err != nil {
				break
			}
			lines = append(lines, l)
		}
		if err == nil {
			err = rows.Err()
		}
		rows.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, v.report(VerifyProblem{Kind: VerifyIntegrity, Problem: "the file cannot be read as an SQLite database: " + err.Error(), Fix: fix})
	}
	if len(lines) == 1 && lines[0] == "ok" {
		return true, nil
	}
	for _, l := range lines {
		if err := v.report(VerifyProblem{Kind: VerifyIntegrity, Problem: "the database file is damaged: " + l + " (no further checks were run)", Fix: fix}); err != nil {
			return false, err
		}
	}
	return false, nil
}

// schemaVersion checks that the sync tables are installed at a version
// this morango knows.
func (v *verifier) schemaVersion(ctx context.Context) (bool, error) {
	ver, err := schemaVersion(ctx, v.tx)
	var p *VerifyProblem
	switch {
	case err != nil:
		p = &VerifyProblem{Problem: "the version of the sync tables cannot be read: " + err.Error(), Fix: restoreFix}
	case ver == 0:
		p = &VerifyProblem{Problem: "the database has no sync tables", Fix: fmt.Sprintf("run 'morango init --db %s --profile PROFILE.json' first", v.path)}
	case ver > currentSchemaVersion:
		p = &VerifyProblem{Problem: fmt.Sprintf("the sync tables are at version %d; this morango knows up to %d", ver, currentSchemaVersion),
			Fix: "verify with a newer morango"}
	case ver < currentSchemaVersion:
		p = &VerifyProblem{Problem: fmt.Sprintf("the sync tables are at version %d and need an upgrade to %d", ver, currentSchemaVersion),
			Fix: fmt.Sprintf("run 'morango status --db %s' once (it upgrades them), then verify again", v.path)}
	}
	if p == nil {
		return true, nil
	}
	p.Kind = VerifySchema
	p.Problem += " (no further checks were run)"
	return false, v.report(*p)
}

// foreignKeys runs PRAGMA foreign_key_check, one problem per table and
// referenced table.
func (v *verifier) foreignKeys(ctx context.Context) error {
	type key struct{ table, parent string }
	type seen struct {
		n     int64
		rowid sql.NullInt64
	}
	found := map[key]*seen{}
	var order []key
	var table, parent string
	var rowid sql.NullInt64
	var fkid int64
	err := v.each(ctx, `SELECT "table", rowid, parent, fkid FROM pragma_foreign_key_check`, nil,
		[]any{&table, &rowid, &parent, &fkid}, func() error {
			k := key{table, parent}
			s := found[k]
			if s == nil {
				s = &seen{rowid: rowid}
				found[k] = s
				order = append(order, k)
			}
			s.n++
			return nil
		})
	if err != nil {
		return err
	}
	for _, k := range order {
		s := found[k]
		id := ""
		if s.rowid.Valid {
			_ = v.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT CAST(id AS TEXT) FROM %s WHERE rowid = ?`, quote(k.table)), s.rowid.Int64).Scan(&id)
		}
		model := k.table
		if v.p != nil {
			if m := v.p.ModelForTable(k.table); m != nil {
				model = m.Name
			}
		}
		err := v.report(VerifyProblem{Kind: VerifyForeignKey, Model: model, ID: id, Count: s.n,
			Problem: fmt.Sprintf("%s of table %s with references to missing rows of %s", plural(s.n, "row"), k.table, k.parent),
			Fix:     fmt.Sprintf("through the app, restore the missing rows of %s or delete the rows of %s that refer to them, then run 'morango serialize --db %s'", k.parent, k.table, v.path)})
		if err != nil {
			return err
		}
	}
	return nil
}

// loadProfile reads the installed profile and the app's tables. Models
// whose tables do not match the profile are reported and left out of the
// checks of app rows.
func (v *verifier) loadProfile(ctx context.Context) error {
	fix := fmt.Sprintf("run 'morango init --db %s --profile PROFILE.json' again with the app's profile", v.path)
	var defs []string
	var def string
	if err := v.each(ctx, `SELECT definition FROM morango_profile`, nil, []any{&def}, func() error {
		defs = append(defs, def)
		return nil
	}); err != nil {
		return err
	}
	if len(defs) != 1 {
		return v.report(VerifyProblem{Kind: VerifyProfile, Problem: fmt.Sprintf("morango_profile holds %d profiles, not one: the checks that need the profile were skipped", len(defs)), Fix: fix})
	}
	p, err := profile.Parse([]byte(defs[0]))
	if err != nil {
		return v.report(VerifyProblem{Kind: VerifyProfile, Problem: "the installed profile is not valid: " + err.Error() + ": the checks that need the profile were skipped", Fix: fix})
	}
	v.p = p
	v.res.Profile = p.Name
	if v.schema, err = readSchema(ctx, v.tx); err != nil {
		return err
	}
	cols := v.schema.columns()
	for _, m := range p.Models {
		one := &profile.Profile{Name: p.Name, Models: []*profile.Model{m}}
		if err := one.CheckSchema(cols); err != nil {
			err := v.report(VerifyProblem{Kind: VerifyProfile, Model: m.Name,
				Problem: fmt.Sprintf("table %s no longer matches the profile: %v; its app rows were not checked", m.Table, err),
				Fix:     fix})
			if err != nil {
				return err
			}
			continue
		}
		v.models = append(v.models, m)
	}
	return nil
}

// instance checks that the database has one current instance, of its
// current database id.
func (v *verifier) instance(ctx context.Context) error {
	fix := fmt.Sprintf("run 'morango status --db %s' once: opening the database re-establishes its instance", v.path)
	type inst struct {
		id, db  string
		counter int64
	}
	var cur []inst
	var i inst
	if err := v.each(ctx, `SELECT id, database_id, counter FROM morango_instanceid WHERE current = 1 ORDER BY id`, nil,
		[]any{&i.id, &i.db, &i.counter}, func() error {
			cur = append(cur, i)
			return nil
		}); err != nil {
		return err
	}
	if len(cur) != 1 {
		return v.report(VerifyProblem{Kind: VerifyInstance,
			Problem: fmt.Sprintf("morango_instanceid has %d current instances, not one; the counter of this device was not checked", len(cur)), Fix: fix})
	}
	var dbID string
	err := v.tx.QueryRowContext(ctx, `SELECT id FROM morango_databaseid WHERE current = 1 ORDER BY date_generated DESC LIMIT 1`).Scan(&dbID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("verify: %w", err)
	}
	if dbID != cur[0].db {
		return v.report(VerifyProblem{Kind: VerifyInstance, ID: cur[0].id,
			Problem: fmt.Sprintf("the current instance belongs to database id %q, but the current database id is %q", cur[0].db, dbID), Fix: fix})
	}
	v.current, v.counter = cur[0].id, cur[0].counter
	return nil
}

// tracking checks the change-tracking triggers and morango_applying.
func (v *verifier) tracking(ctx context.Context) error {
	var n int64
	if err := v.tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_applying`).Scan(&n); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if n > 0 {
		err := v.report(VerifyProblem{Kind: VerifyTrackingStopped,
			Problem: "morango_applying holds a row, which switches change tracking off: the app's writes are not being recorded",
			Fix:     fmt.Sprintf("make sure no morango command is running, then run: sqlite3 %s 'DELETE FROM morango_applying'; then 'morango init' again (it marks every row for serialization)", v.path)})
		if err != nil {
			return err
		}
	}
	// The sync tables' own triggers (an older morango's init drops them).
	var gone []string
	for _, tr := range syncTriggers {
		var ok bool
		err := v.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?)`, tr.name).Scan(&ok)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if !ok {
			gone = append(gone, tr.name)
		}
	}
	if len(gone) > 0 {
		err := v.report(VerifyProblem{Kind: VerifyTriggers,
			Problem: fmt.Sprintf("the sync tables lack their triggers (%s), which an older morango's init drops: notes of what the app showed outlive the versions they were kept for", strings.Join(gone, ", ")),
			Fix:     fmt.Sprintf("run 'morango status --db %s' once: opening the database restores them", v.path)})
		if err != nil {
			return err
		}
	}
	if v.p == nil {
		return nil
	}
	for _, m := range v.models {
		var missing []string
		for _, op := range trackingOps {
			var ok bool
			err := v.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ? AND tbl_name = ?)`,
				trackingTrigger(m.Table, op), m.Table).Scan(&ok)
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if !ok {
				missing = append(missing, op)
			}
		}
		if len(missing) > 0 {
			err := v.report(VerifyProblem{Kind: VerifyTriggers, Model: m.Name,
				Problem: fmt.Sprintf("table %s lacks its change-tracking triggers (%s): the app's changes to it are not recorded", m.Table, strings.Join(missing, ", ")),
				Fix:     fmt.Sprintf("run 'morango init --db %s --profile PROFILE.json' again: it reinstalls the triggers and marks every row for serialization", v.path)})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// knownModels returns an SQL list of the profile's model names.
func (v *verifier) knownModels() string {
	names := make([]string, 0, len(v.p.Models))
	for _, m := range v.p.Models {
		names = append(names, literal(m.Name))
	}
	if len(names) == 0 {
		return "(NULL)"
	}
	return "(" + strings.Join(names, ", ") + ")"
}

// recordProfiles reports records of another profile.
func (v *verifier) recordProfiles(ctx context.Context) error {
	if err := v.tx.QueryRowContext(ctx, `SELECT count(*) FROM morango_store`).Scan(&v.res.Records); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if v.p == nil {
		return nil
	}
	var model, id, prof string
	return v.each(ctx, `SELECT model_name, id, profile FROM morango_store WHERE profile <> ?`, []any{v.p.Name},
		[]any{&model, &id, &prof}, func() error {
			return v.report(VerifyProblem{Kind: VerifyWrongProfile, Model: model, ID: id,
				Problem: fmt.Sprintf("the record belongs to profile %q, but this database syncs %q: it is never written to the app", prof, v.p.Name),
				Fix:     restoreFix})
		})
}

// unknownModels reports, per model name, records of models the profile
// does not name. Imports keep them (a device may relay models of a newer
// app), so they are notices.
func (v *verifier) unknownModels(ctx context.Context) error {
	if v.p == nil {
		return nil
	}
	var model, id string
	var n int64
	return v.each(ctx, `SELECT model_name, count(*), min(id) FROM morango_store WHERE model_name NOT IN `+v.knownModels()+` GROUP BY model_name`, nil,
		[]any{&model, &n, &id}, func() error {
			return v.report(VerifyProblem{Kind: VerifyUnknownModel, Severity: SeverityNotice, Model: model, ID: id, Count: n,
				Problem: fmt.Sprintf("%s of model %q, which the installed profile does not name: passed on to other devices but never written to this app", plural(n, "record"), model),
				Fix:     "nothing, if this app has no such model; otherwise install the app's current profile with 'morango init'"})
		})
}

// globSQL returns an SQL expression for a GLOB pattern matching every
// partition the template can render, with ${id} standing for idExpr. It
// reads templates as templateSQL does.
func globSQL(tmpl, idExpr string) string {
	return templateExpr(tmpl, func(name string) (string, bool) {
		if name == "id" {
			return idExpr, true
		}
		return "*", false
	}, func(b *strings.Builder, c byte) {
		switch c {
		case '*', '?', '[':
			b.WriteString("[" + string(c) + "]")
		default:
			b.WriteByte(c)
		}
	})
}

// identities checks each record of a known model against its model's
// templates: the id is the namespaced id of its partition, source id and
// model (models with a source-id template) or 32 hex digits (others); the
// partition has the shape of the partition template. Where the record's
// data now renders another partition or source id, it is reported as a
// notice: a record keeps the partition it was created in.
func (v *verifier) identities(ctx context.Context) error {
	if v.p == nil || len(v.p.Models) == 0 {
		return nil
	}
	var cols []string
	for _, m := range v.p.Models {
		for _, c := range m.TemplateColumns() {
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	const idExpr = `j."s:id"`
	var idOK, shapeOK, part, src strings.Builder
	for _, b := range []*strings.Builder{&idOK, &shapeOK, &part, &src} {
		b.WriteString(`CASE j."s:model_name"`)
	}
	for _, m := range v.p.Models {
		name := literal(m.Name)
		if m.SourceID != "" {
			fmt.Fprintf(&idOK, " WHEN %s THEN %s = morango_sha2_uuid(replace(j.\"s:partition\", %s, %s), j.\"s:source_id\", j.\"s:model_name\")",
				name, idExpr, idExpr, literal(ids.IDPlaceholder))
			fmt.Fprintf(&src, " WHEN %s THEN %s", name, templateSQL(m.SourceID, "j", idExpr))
		} else {
			fmt.Fprintf(&idOK, " WHEN %s THEN length(%s) = 32 AND %s NOT GLOB '*[^0-9a-f]*'", name, idExpr, idExpr)
			fmt.Fprintf(&src, " WHEN %s THEN j.\"s:source_id\"", name)
		}
		fmt.Fprintf(&shapeOK, " WHEN %s THEN j.\"s:partition\" GLOB %s", name, globSQL(m.Partition, idExpr))
		fmt.Fprintf(&part, " WHEN %s THEN %s", name, templateSQL(m.Partition, "j", idExpr))
	}
	for _, b := range []*strings.Builder{&idOK, &shapeOK, &part, &src} {
		b.WriteString(" END")
	}
	// The data's columns, where the data is a live record's JSON object.
	live := `NOT s.deleted AND NOT s.hard_deleted AND (CASE WHEN json_valid(s.serialized) THEN json_type(s.serialized) = 'object' ELSE 0 END)`
	var proj strings.Builder
	for _, c := range cols {
		fmt.Fprintf(&proj, ", CASE WHEN %s THEN json_extract(s.serialized, %s) END AS %s", live, jsonPath(c), quote(c))
	}
	q := fmt.Sprintf(`SELECT model, id, partition, source_id, id_ok, shape_ok, drift, coalesce(rendered, ''), coalesce(rendered_source, '')
		FROM (SELECT model, id, partition, source_id, id_ok, shape_ok, rendered, rendered_source,
				coalesce(rendered IS NOT NULL AND rendered_source IS NOT NULL AND (rendered <> partition OR rendered_source <> source_id), 0) AS drift
			FROM (SELECT j."s:model_name" AS model, j."s:id" AS id, j."s:partition" AS partition, j."s:source_id" AS source_id,
					coalesce(%s, 0) AS id_ok, coalesce(%s, 0) AS shape_ok, %s AS rendered, %s AS rendered_source
				FROM (SELECT s.id AS "s:id", s.model_name AS "s:model_name", s.partition AS "s:partition", s.source_id AS "s:source_id"%s
					FROM morango_store s WHERE s.profile = ? AND s.model_name IN %s) j))
		WHERE NOT id_ok OR NOT shape_ok OR drift`,
		idOK.String(), shapeOK.String(), part.String(), src.String(), proj.String(), v.knownModels())
	var model, id, partition, source, rendered, renderedSource string
	var okID, okShape, drift bool
	return v.each(ctx, q, []any{v.p.Name}, []any{&model, &id, &partition, &source, &okID, &okShape, &drift, &rendered, &renderedSource}, func() error {
		m := v.p.Model(model)
		if !okID {
			p := VerifyProblem{Kind: VerifyBadID, Model: model, ID: id, Fix: restoreFix,
				Problem: "the record's id is not 32 lower-case hex digits"}
			if m.SourceID != "" {
				p.Kind = VerifyIDMismatch
				p.Problem = fmt.Sprintf("the record's id is not %s, the namespaced id of its partition %q, source id %q and model",
					ids.Namespaced(ids.RawPartition(partition, id), source, model), partition, source)
			}
			if err := v.report(p); err != nil {
				return err
			}
		}
		if !okShape {
			return v.report(VerifyProblem{Kind: VerifyPartitionMismatch, Model: model, ID: id, Fix: restoreFix,
				Problem: fmt.Sprintf("the record's partition %q does not have the shape of its model's template %q: it is outside the partitions of its model, so certificates grant it to the wrong devices", partition, m.Partition)})
		}
		if okID && drift {
			what := fmt.Sprintf("partition %q", rendered)
			if renderedSource != source {
				what += fmt.Sprintf(" and source id %q", renderedSource)
			}
			return v.report(VerifyProblem{Kind: VerifyPartitionDrift, Severity: SeverityNotice, Model: model, ID: id,
				Problem: fmt.Sprintf("the record's data now gives %s, but the record stays in partition %q, where it was created", what, partition),
				Fix:     "nothing, if that is intended (see docs/profile.md: records do not move); to move the row, delete it and insert a new one through the app"})
		}
		return nil
	})
}

// data checks that live records hold a JSON object and hard-deleted ones
// hold nothing.
func (v *verifier) data(ctx context.Context) error {
	var model, id string
	var hard bool
	return v.each(ctx, `SELECT model_name, id, hard_deleted FROM morango_store
		WHERE CASE WHEN hard_deleted THEN serialized <> '{}' OR NOT deleted
			ELSE NOT (CASE WHEN json_valid(serialized) THEN json_type(serialized) = 'object' ELSE 0 END) END`, nil,
		[]any{&model, &id, &hard}, func() error {
			if hard {
				return v.report(VerifyProblem{Kind: VerifyBadData, Model: model, ID: id,
					Problem: "the record is hard-deleted (erased) but still holds data or is not marked deleted",
					Fix:     fmt.Sprintf("erase it again: morango delete --db %s --model %s %s", v.path, model, id)})
			}
			return v.report(VerifyProblem{Kind: VerifyBadData, Model: model, ID: id,
				Problem: "the record's data (serialized) is not a JSON object", Fix: restoreFix})
		})
}

// versions checks the head version's dot.
func (v *verifier) versions(ctx context.Context) error {
	var model, id, inst string
	var c int64
	return v.each(ctx, `SELECT model_name, id, last_saved_instance, last_saved_counter FROM morango_store
		WHERE last_saved_instance = '' OR last_saved_counter < 1`, nil, []any{&model, &id, &inst, &c}, func() error {
		return v.report(VerifyProblem{Kind: VerifyBadVersion, Model: model, ID: id,
			Problem: fmt.Sprintf("the record's version %q:%d has no instance or a counter below 1", inst, c), Fix: restoreFix})
	})
}

// heads checks that each record's history includes its head version.
func (v *verifier) heads(ctx context.Context) error {
	var model, id, inst string
	var c int64
	var h sql.NullInt64
	return v.each(ctx, `SELECT s.model_name, s.id, s.last_saved_instance, s.last_saved_counter, h.counter
		FROM morango_store s LEFT JOIN morango_recordmaxcounter h ON h.store_model_id = s.id AND h.instance_id = s.last_saved_instance
		WHERE h.counter IS NULL OR h.counter < s.last_saved_counter`, nil, []any{&model, &id, &inst, &c, &h}, func() error {
		what := "has no entry for that instance"
		if h.Valid {
			what = fmt.Sprintf("holds only counter %d for that instance", h.Int64)
		}
		return v.report(VerifyProblem{Kind: VerifyHeadNotInHistory, Model: model, ID: id,
			Problem: fmt.Sprintf("the record's version %s:%d is not in its history: morango_recordmaxcounter %s, so other devices may be sent it again or not at all", inst, c, what),
			Fix:     restoreFix + "; or edit the row in the app and run 'morango serialize': a new version rebuilds the history's head"})
	})
}

// histories checks the record-max counter rows themselves.
func (v *verifier) histories(ctx context.Context) error {
	var model, id, inst string
	var c int64
	return v.each(ctx, `SELECT coalesce(s.model_name, ''), h.store_model_id, h.instance_id, h.counter FROM morango_recordmaxcounter h
		LEFT JOIN morango_store s ON s.id = h.store_model_id WHERE h.instance_id = '' OR h.counter < 1`, nil,
		[]any{&model, &id, &inst, &c}, func() error {
			return v.report(VerifyProblem{Kind: VerifyBadHistory, Model: model, ID: id,
				Problem: fmt.Sprintf("the record's history holds %q:%d: an entry needs an instance and a counter of at least 1", inst, c), Fix: restoreFix})
		})
}

// orphans reports history rows of records that do not exist.
func (v *verifier) orphans(ctx context.Context) error {
	var id string
	var n int64
	return v.each(ctx, `SELECT h.store_model_id, count(*) FROM morango_recordmaxcounter h
		WHERE NOT EXISTS (SELECT 1 FROM morango_store s WHERE s.id = h.store_model_id) GROUP BY h.store_model_id`, nil,
		[]any{&id, &n}, func() error {
			return v.report(VerifyProblem{Kind: VerifyOrphanHistory, ID: id, Count: n,
				Problem: fmt.Sprintf("%s (morango_recordmaxcounter) for a record the store does not hold", plural(n, "history entry")),
				Fix:     restoreFix})
		})
}

// siblings decodes the concurrent versions of every record that has some
// and checks them against the record's head and history.
func (v *verifier) siblings(ctx context.Context) error {
	rows, err := v.tx.QueryContext(ctx, `SELECT `+recordColumns("s")+` FROM morango_store s WHERE s.conflicting_serialized_data <> ''`)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()
	fix := fmt.Sprintf("%s; or keep one version with 'morango resolve --db %s' if 'morango conflicts' lists the record", restoreFix, v.path)
	var r Record
	for rows.Next() {
		if err := scanRecord(rows, &r); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		sibs, err := merge.DecodeSiblings(r.Conflicting)
		if err != nil {
			err := v.report(VerifyProblem{Kind: VerifyBadSiblings, Model: r.ModelName, ID: r.ID,
				Problem: "the record's conflicting versions (conflicting_serialized_data) cannot be read: " + err.Error(), Fix: restoreFix})
			if err != nil {
				return err
			}
			continue
		}
		hist := r.historyMap()
		var wrong []string
		for _, s := range sibs {
			dot := fmt.Sprintf("%s:%d", s.Instance, s.Counter)
			switch {
			case s.Instance == r.LastSavedInstance && s.Counter == r.LastSavedCounter:
				wrong = append(wrong, "version "+dot+" is both the head and a sibling")
			case hist[s.Instance] < s.Counter:
				wrong = append(wrong, "version "+dot+" is not in the record's history")
			case r.HardDeleted && !s.HardDeleted:
				wrong = append(wrong, "the record is erased, yet version "+dot+" keeps data")
			}
			if s.Instance == v.current {
				v.ownSiblingsMax = max(v.ownSiblingsMax, s.Counter)
			}
		}
		if len(wrong) > 0 {
			if err := v.report(VerifyProblem{Kind: VerifyBadSiblings, Model: r.ModelName, ID: r.ID,
				Problem: "the record's conflicting versions are inconsistent: " + strings.Join(wrong, "; "), Fix: fix}); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// unclaimed reports, per instance, records whose history holds versions
// above what this database claims to hold of that instance under the
// record's partition (its database-max counters). For this device's own
// instance that cannot happen: serialization claims every version it
// writes. For other instances it can (an import that refused a record
// claims nothing), and it is harmless: peers send those versions again.
func (v *verifier) unclaimed(ctx context.Context) error {
	var inst, id, model string
	var n, top, claimed int64
	return v.each(ctx, `SELECT instance_id, count(*), max(counter), id, model_name, claimed FROM (
			SELECT h.instance_id, h.counter, s.id, s.model_name,
				coalesce((SELECT max(d.counter) FROM morango_databasemaxcounter d
					WHERE d.instance_id = h.instance_id AND substr(s.partition, 1, length(d.partition)) = d.partition), 0) AS claimed
			FROM morango_recordmaxcounter h JOIN morango_store s ON s.id = h.store_model_id)
		WHERE counter > claimed GROUP BY instance_id ORDER BY instance_id`, nil,
		[]any{&inst, &n, &top, &id, &model, &claimed}, func() error {
			p := VerifyProblem{Kind: VerifyUnclaimed, Model: model, ID: id, Count: n}
			if inst == v.current {
				p.Problem = fmt.Sprintf("%s with versions of this device's own instance %s (up to counter %d) that its database-max counters do not claim (the record named claims %d)",
					plural(n, "record"), inst, top, claimed)
				p.Fix = fmt.Sprintf("make any change in the app and run 'morango serialize --db %s': serialization claims every version of this device up to its counter", v.path)
			} else {
				p.Severity = SeverityNotice
				p.Problem = fmt.Sprintf("%s with versions of instance %s (up to counter %d) above what this database claims to hold of it (the record named: %d); harmless: peers will send them again",
					plural(n, "record"), inst, top, claimed)
				p.Fix = "nothing: the next import from a device that holds them records the claim"
			}
			return v.report(p)
		})
}

// counterBehind checks that this device's counter is at least every
// counter recorded for its instance: else its next versions would reuse
// the dots of versions that exist already.
func (v *verifier) counterBehind(ctx context.Context) error {
	if v.current == "" {
		return nil
	}
	var rmc, dmc, lsc sql.NullInt64
	err := v.tx.QueryRowContext(ctx, `SELECT (SELECT max(counter) FROM morango_recordmaxcounter WHERE instance_id = ?),
		(SELECT max(counter) FROM morango_databasemaxcounter WHERE instance_id = ?),
		(SELECT max(last_saved_counter) FROM morango_store WHERE last_saved_instance = ?)`, v.current, v.current, v.current).Scan(&rmc, &dmc, &lsc)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	top, where := v.ownSiblingsMax, "a conflicting version"
	for _, c := range []struct {
		n     sql.NullInt64
		where string
	}{{lsc, "a record's version"}, {rmc, "a record's history"}, {dmc, "the database-max counters"}} {
		if c.n.Valid && c.n.Int64 > top {
			top, where = c.n.Int64, c.where
		}
	}
	if top <= v.counter {
		return nil
	}
	return v.report(VerifyProblem{Kind: VerifyCounterBehind, ID: v.current,
		Problem: fmt.Sprintf("this device's counter is %d, but %s holds counter %d of its instance %s: the next changes would reuse versions that exist already (was the file restored from an older copy?)",
			v.counter, where, top, v.current),
		Fix: fmt.Sprintf("before the app writes again, move the file to a new path and open it there (e.g. 'morango status'): a moved database gets a new instance id; the old path %s must not be used again", v.path)})
}

// appRows compares every app row that has no unserialized change with its
// store record, model by model: the record must exist, be of the row's
// model and, unless it waits to be written to the app, hold the row's
// data (the JSON serialization would build from it) and not be deleted.
func (v *verifier) appRows(ctx context.Context) error {
	serialize := fmt.Sprintf("run 'morango serialize --db %s'", v.path)
	for _, m := range v.models {
		t := v.schema[m.Table]
		cols := syncedColumns(t, m)
		table, model := quote(m.Table), literal(m.Name)
		var n int64
		if err := v.tx.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		v.res.AppRows += n
		object := `(CASE WHEN json_valid(s.serialized) THEN json_type(s.serialized) = 'object' ELSE 0 END)`
		fresh := jsonSetSQL("s.serialized", "t", cols)
		q := fmt.Sprintf(`SELECT coalesce(CAST(t.id AS TEXT), ''), s.id IS NOT NULL, coalesce(s.model_name, ''), coalesce(s.deleted, 0), coalesce(s.hard_deleted, 0),
				CASE WHEN s.model_name = %[2]s AND NOT s.dirty_bit AND NOT s.deleted AND %[3]s THEN %[4]s END,
				CASE WHEN s.model_name = %[2]s AND NOT s.dirty_bit AND NOT s.deleted AND %[3]s THEN json(s.serialized) END
			FROM %[1]s t LEFT JOIN morango_store s ON s.id = t.id
			WHERE NOT EXISTS (SELECT 1 FROM morango_dirty d WHERE d.model = %[2]s AND d.id = t.id)
				AND (s.id IS NULL OR s.model_name <> %[2]s
					OR (NOT s.dirty_bit AND (s.deleted OR (CASE WHEN %[3]s THEN (CASE WHEN %[4]s <> json(s.serialized) THEN %[4]s <> %[5]s ELSE 0 END) ELSE 0 END))))`,
			table, model, object, fresh, respelledSQL("s.serialized", cols))
		defaults := v.defaults(ctx, t, cols)
		var id, otherModel string
		var exists, deleted, hard bool
		var fromRow, stored sql.NullString
		err := v.each(ctx, q, nil, []any{&id, &exists, &otherModel, &deleted, &hard, &fromRow, &stored}, func() error {
			p := VerifyProblem{Model: m.Name, ID: id}
			switch {
			case !exists:
				p.Kind = VerifyMissingRecord
				p.Problem = "the app row has no store record and is not marked as changed: it was written without change tracking, so it never syncs"
				p.Fix = fmt.Sprintf("update the row through the app (any UPDATE marks it) and %s; or run 'morango init' again, which marks every row", serialize)
			case otherModel != m.Name:
				p.Kind = VerifyModelMismatch
				p.Problem = fmt.Sprintf("the app row's id belongs to a record of model %s: the row cannot sync as %s", otherModel, m.Name)
				p.Fix = "give the app row a new id (delete it and insert it again with a fresh id)"
			case hard:
				p.Kind = VerifyDeletedHasRow
				p.Problem = "the record is erased (hard-deleted) but the app still holds the row"
				p.Fix = fmt.Sprintf("erase the row again: morango delete --db %s --model %s %s", v.path, m.Name, id)
			case deleted:
				p.Kind = VerifyDeletedHasRow
				p.Problem = "the record is deleted but the app still holds the row, unchanged since"
				p.Fix = fmt.Sprintf("delete the row through the app, or update it to keep it (a new version re-creates the record); then %s", serialize)
			default:
				d := differingKeys(fromRow.String, stored.String)
				if len(d) > 0 && len(atDefault(d, fromRow.String, stored.String, defaults)) == len(d) {
					// A record of an older app, without some columns:
					// deserializing gave the row their defaults.
					return nil
				}
				p.Kind = VerifyDataMismatch
				p.Problem = "the app row differs from its store record"
				if len(d) > 0 {
					p.Problem += " in " + strings.Join(d, ", ")
				}
				p.Problem += "; the row is not marked as changed, so the difference never syncs"
				p.Fix = fmt.Sprintf("if the app row is right: update it through the app (any UPDATE marks it) and %s; if the record is right: %s", serialize, restoreFix)
			}
			return v.report(p)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// plural returns "1 row", "2 rows", "2 history entries".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// defaults returns, for the columns cols of t, the JSON of the value a new
// app row takes when its record lacks the column: its default, or null.
func (v *verifier) defaults(ctx context.Context, t *tableInfo, cols []string) map[string]string {
	out := make(map[string]string, len(cols))
	for _, c := range cols {
		out[c] = "null"
		ci := t.column(c)
		if ci == nil || !ci.Default.Valid {
			continue
		}
		var j sql.NullString
		if err := v.tx.QueryRowContext(ctx, `SELECT json_quote(`+ci.Default.String+`)`).Scan(&j); err != nil {
			// A default that cannot be evaluated alone matches no row
			// (one that depends on the moment matches none either).
			delete(out, c)
			continue
		}
		out[c] = j.String
	}
	return out
}

// atDefault returns the keys of keys that the record's JSON stored lacks
// and that the row's JSON fromRow holds at their default.
func atDefault(keys []string, fromRow, stored string, defaults map[string]string) []string {
	var row, rec map[string]json.RawMessage
	if json.Unmarshal([]byte(fromRow), &row) != nil || json.Unmarshal([]byte(stored), &rec) != nil {
		return nil
	}
	var out []string
	for _, k := range keys {
		_, inRecord := rec[k]
		def, ok := defaults[k]
		if v, inRow := row[k]; !inRecord && inRow && ok && sameJSON(string(v), def) {
			out = append(out, k)
		}
	}
	return out
}

// sameJSON reports whether two JSON values are the same, numbers by value
// (a REAL column's 0.0 is its default 0).
func sameJSON(a, b string) bool {
	if a == b {
		return true
	}
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	return err1 == nil && err2 == nil && x == y
}

// differingKeys lists the top-level keys whose values differ between two
// JSON objects, sorted.
func differingKeys(a, b string) []string {
	var ma, mb map[string]json.RawMessage
	if json.Unmarshal([]byte(a), &ma) != nil || json.Unmarshal([]byte(b), &mb) != nil {
		return nil
	}
	var d []string
	for k, va := range ma {
		if vb, ok := mb[k]; !ok || string(va) != string(vb) {
			d = append(d, k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			d = append(d, k)
		}
	}
	slices.Sort(d)
	return d
}

// missingAppRows reports live records, not waiting to be written to the
// app, whose app row is gone without the deletion being tracked. One scan
// of the store for every model.
func (v *verifier) missingAppRows(ctx context.Context) error {
	if len(v.models) == 0 {
		return nil
	}
	var cases strings.Builder
	for _, m := range v.models {
		fmt.Fprintf(&cases, " WHEN %s THEN NOT EXISTS (SELECT 1 FROM %s t WHERE t.id = s.id)", literal(m.Name), quote(m.Table))
	}
	q := fmt.Sprintf(`SELECT s.model_name, s.id FROM morango_store s
		WHERE s.profile = ? AND NOT s.deleted AND NOT s.dirty_bit AND (CASE s.model_name%s ELSE 0 END)
			AND NOT EXISTS (SELECT 1 FROM morango_dirty d WHERE d.model = s.model_name AND d.id = s.id)`, cases.String())
	var model, id string
	return v.each(ctx, q, []any{v.p.Name}, []any{&model, &id}, func() error {
		return v.report(VerifyProblem{Kind: VerifyMissingAppRow, Model: model, ID: id,
			Problem: "the record is live but the app has no row for it, and no deletion was recorded: the row was deleted without change tracking",
			Fix: fmt.Sprintf("if the row should exist: %s; if it should be gone: insert it again and delete it through the app, then run 'morango serialize --db %s'",
				restoreFix, v.path)})
	})
}

// waiting reports the work waiting for the engine: app changes not yet
// serialized, and records not yet written to the app. These are notices.
func (v *verifier) waiting(ctx context.Context) error {
	if v.p == nil {
		return nil
	}
	for _, m := range v.p.Models {
		var n int64
		var example string
		err := v.tx.QueryRowContext(ctx, `SELECT count(*), coalesce(min(id), '') FROM morango_dirty WHERE model = ? AND error = ''`, m.Name).Scan(&n, &example)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if n > 0 {
			err := v.report(VerifyProblem{Kind: VerifyUnserialized, Severity: SeverityNotice, Model: m.Name, ID: example, Count: n,
				Problem: fmt.Sprintf("%s changed since the last serialization (unserialized changes)", plural(n, "app row")),
				Fix:     fmt.Sprintf("run 'morango serialize --db %s' (export and import do it too)", v.path)})
			if err != nil {
				return err
			}
		}
		var id, reason string
		err = v.each(ctx, `SELECT id, error FROM morango_dirty WHERE model = ? AND error <> '' ORDER BY id`, []any{m.Name}, []any{&id, &reason}, func() error {
			fix := "fix the row through the app; the next serialization records it"
			if strings.HasPrefix(reason, outsidePrefix) {
				// Fixing the row here does not help: the change is one
				// this device may not make.
				fix = "make the change on a device that may write the partition, or undo it in the app; " +
					"'morango conflicts --replaced' keeps it if another device's version replaces the row"
			}
			return v.report(VerifyProblem{Kind: VerifyUnserializable, Severity: SeverityNotice, Model: m.Name, ID: id,
				Problem: "an unserialized change that cannot be serialized yet: " + reason, Fix: fix})
		})
		if err != nil {
			return err
		}
		err = v.tx.QueryRowContext(ctx, `SELECT count(*), coalesce(min(id), '') FROM morango_store WHERE model_name = ? AND dirty_bit AND deserialization_error = ''`, m.Name).Scan(&n, &example)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if n > 0 {
			err := v.report(VerifyProblem{Kind: VerifyPending, Severity: SeverityNotice, Model: m.Name, ID: example, Count: n,
				Problem: fmt.Sprintf("%s received but not yet written to the app", plural(n, "record")),
				Fix:     "nothing: the next import writes every record that waits (see 'morango status')"})
			if err != nil {
				return err
			}
		}
		err = v.each(ctx, `SELECT id, deserialization_error FROM morango_store WHERE model_name = ? AND dirty_bit AND deserialization_error <> '' ORDER BY id`,
			[]any{m.Name}, []any{&id, &reason}, func() error {
				return v.report(VerifyProblem{Kind: VerifyPending, Severity: SeverityNotice, Model: m.Name, ID: id,
					Problem: "a received record waits to be written to the app: " + reason,
					Fix:     "nothing: it is written once what it refers to arrives (see 'morango status')"})
			})
		if err != nil {
			return err
		}
	}
	var n int64
	err := v.tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM morango_deletedmodels) + (SELECT count(*) FROM morango_harddeletedmodels)`).Scan(&n)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if n > 0 {
		return v.report(VerifyProblem{Kind: VerifyUnserialized, Severity: SeverityNotice, Count: n,
			Problem: fmt.Sprintf("%s recorded by the app (morango_deletedmodels, morango_harddeletedmodels) not yet serialized", plural(n, "deletion")),
			Fix:     fmt.Sprintf("run 'morango serialize --db %s'", v.path)})
	}
	return nil
}
