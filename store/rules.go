package store

import (
	"github.com/morango-sync/morango/merge"
	"github.com/morango-sync/morango/profile"
)

// ruleFor returns the merge rule a model's profile entry chooses.
func ruleFor(m *profile.Model) merge.Rule {
	if m.Merge == nil {
		return nil
	}
	return merge.ColumnRule(m.Merge.Column, m.Merge.Prefer == "max")
}
