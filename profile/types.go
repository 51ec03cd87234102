package profile

import "github.com/morango-sync/morango/certs"

// Profile declares what one application syncs: its syncable models and the
// scope definitions certificates refer to.
type Profile struct {
	// Name is the profile's name, e.g. "facilitydata". It is stored on every
	// record and certificate and must match between devices.
	Name             string                  `json:"profile"`
	Models           []*Model                `json:"models"`
	ScopeDefinitions []certs.ScopeDefinition `json:"scope_definitions"`
}

// Model is one syncable table.
type Model struct {
	// Name is the model name carried on every record (unique in the profile).
	Name string `json:"name"`
	// Table is the app's table. It has a TEXT primary key "id".
	Table string `json:"table"`
	// Partition is a template over the row's columns, e.g.
	// "${dataset_id}:user-rw:${user_id}"; ${id} stands for the row's own id.
	Partition string `json:"partition"`
	// SourceID, if set, is a template over the row's columns; the row's id
	// must then be the namespaced id of (partition, source id, model name),
	// so that devices creating "the same" record converge on one row.
	SourceID string `json:"source_id,omitempty"`
	// ForeignKeys maps a column to the name of the model it references.
	// A reference to the model itself is a self-reference.
	ForeignKeys map[string]string `json:"foreign_keys,omitempty"`
	// Dependencies names further models whose rows must be written before
	// this model's.
	Dependencies []string `json:"dependencies,omitempty"`
	// Exclude lists columns that are never synced.
	Exclude []string `json:"exclude,omitempty"`
	// Merge chooses how concurrent versions are ordered; nil means the
	// default rule.
	Merge *MergeRule `json:"merge,omitempty"`
}

// MergeRule is a per-model conflict rule.
type MergeRule struct {
	// Prefer is "max" (the version whose Column holds the greater value wins)
	// or "min".
	Prefer string `json:"prefer"`
	Column string `json:"column"`
}
