package auditlog

import "github.com/auditexport/auditexport/internal/elemspec"

// The element query types live in elemspec (ent stores them and must not
// import this package); these aliases keep auditlog's API self-contained.
type (
	// Spec is a table element's query.
	Spec = elemspec.Spec
	// Filter keeps rows where Column Op Values.
	Filter = elemspec.Filter
	// TimeRange keeps rows within Last before the query time.
	TimeRange = elemspec.TimeRange
	// SortKey orders rows.
	SortKey = elemspec.SortKey
)

// Filter operators.
const (
	OpEquals      = elemspec.OpEquals
	OpNotEquals   = elemspec.OpNotEquals
	OpIn          = elemspec.OpIn
	OpNotIn       = elemspec.OpNotIn
	OpContains    = elemspec.OpContains
	OpGreaterThan = elemspec.OpGreaterThan
	OpLessThan    = elemspec.OpLessThan
	OpBetween     = elemspec.OpBetween
)
