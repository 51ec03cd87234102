package fsic

// Counters maps an instance id to a counter: "every version written by this
// instance up to this counter".
type Counters map[string]int64

// Partitions maps a partition prefix to the counters known under it.
type Partitions map[string]Counters

// V2 is a filter-specific instance counter set in the original's v2 form:
// counters on partitions that are strict prefixes of a filter prefix (Super)
// and on partitions at or below a filter prefix (Sub).
type V2 struct {
	Super Partitions `json:"super"`
	Sub   Partitions `json:"sub"`
}

// MaxCounter is one database-max-counter row: this database holds every
// version written by Instance, for records whose partition starts with
// Partition, up to Counter.
type MaxCounter struct {
	Instance  string
	Partition string
	Counter   int64
}
