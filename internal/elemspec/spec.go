// Package elemspec defines a table element's query (columns, filters, time range,
// sort). It has no dependencies so that ent schemas can store it as JSON.
package elemspec

import "time"

// Spec is a table element's query: which columns, which rows, in what order.
// It is stored with the element and used by both QueryElement and exports.
type Spec struct {
	Columns   []string   `json:"columns,omitempty"`
	Filters   []Filter   `json:"filters,omitempty"`
	TimeRange *TimeRange `json:"time_range,omitempty"`
	Sort      []SortKey  `json:"sort,omitempty"`
}

// Filter operators.
const (
	OpEquals      = "EQUALS"
	OpNotEquals   = "NOT_EQUALS"
	OpIn          = "IN"
	OpNotIn       = "NOT_IN"
	OpContains    = "CONTAINS"
	OpGreaterThan = "GREATER_THAN"
	OpLessThan    = "LESS_THAN"
	OpBetween     = "BETWEEN"
)

// Filter keeps rows where Column Op Values.
type Filter struct {
	Column string   `json:"column"`
	Op     string   `json:"op"`
	Values []string `json:"values,omitempty"`
}

// TimeRange keeps rows whose Column lies within Last before the query time.
type TimeRange struct {
	Column string        `json:"column"`
	Last   time.Duration `json:"last"`
}

// SortKey orders rows.
type SortKey struct {
	Column     string `json:"column"`
	Descending bool   `json:"descending,omitempty"`
}
