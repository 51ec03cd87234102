package certs

// Link is one certificate of a chain as it travels between devices. A chain
// is a JSON list of links, root first: the original's chain format.
type Link struct {
	ID         string `json:"id"`
	Serialized string `json:"serialized"`
	Signature  string `json:"signature"`
}

// ScopeDefinition is a named template of read, write and read-write filters,
// with the original's fields and JSON names.
type ScopeDefinition struct {
	ID                      string `json:"id"`
	Profile                 string `json:"profile"`
	Version                 int    `json:"version"`
	PrimaryScopeParamKey    string `json:"primary_scope_param_key"`
	Description             string `json:"description"`
	ReadFilterTemplate      string `json:"read_filter_template"`
	WriteFilterTemplate     string `json:"write_filter_template"`
	ReadWriteFilterTemplate string `json:"read_write_filter_template"`
}
