package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Result is one page of a query.
type Result struct {
	Columns []Column
	Rows    [][]any
	Total   int64 // rows matching the spec, regardless of offset/limit
}

// InvalidSpecError is returned by Query and Stream for a spec that fails
// ValidateSpec.
type InvalidSpecError struct {
	Violations []Violation
}

func (e *InvalidSpecError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Msg
	}
	return "invalid audit log query: " + strings.Join(parts, "; ")
}

// ErrNoOrg is returned when the context is not scoped to one organization.
// The ent interceptor would accept a system context and return every
// organization's rows; that must never reach a user, so we refuse it here.
var ErrNoOrg = errors.New("auditlog: query without an organization in context")

// scanBatch is how many rows Stream fetches per query (keyset page): large enough that
// per-query overhead is negligible, small enough to keep memory flat.
var scanBatch = 5000 // a var so tests can force many batches

// idColumn is the insert sequence, used as the final tie-breaker so that
// rows with equal sort values still come in a stable order across pages.
var idColumn = Column{Name: "ID", Type: TypeInteger, DB: "id"}

type sortCol struct {
	col  Column
	desc bool
}

type compiledFilter struct {
	col  Column
	op   string
	vals []any
}

// plan is a validated spec resolved against the table.
type plan struct {
	out      []Column  // output columns, in order
	keys     []sortCol // ORDER BY, ending with id
	filters  []compiledFilter
	timeCol  Column // relative time range, if timeCol.DB != ""
	from, to time.Time
	fetch    []string // db columns to load: output and sort columns (ent adds id)
	// Insert-sequence window (exclusive, inclusive]; seqTo 0 means no window.
	seqFrom, seqTo int64
}

func compile(ctx context.Context, s Spec, now time.Time) (*plan, error) {
	if _, ok := tenant.Org(ctx); !ok {
		return nil, ErrNoOrg
	}
	if vs := ValidateSpec(s); len(vs) > 0 {
		return nil, &InvalidSpecError{Violations: vs}
	}
	p := &plan{}
	if len(s.Columns) == 0 {
		p.out = append(p.out, Columns...)
	}
	for _, name := range s.Columns {
		c, _ := ColumnByName(name)
		p.out = append(p.out, c)
	}
	for _, f := range s.Filters {
		c, _ := ColumnByName(f.Column)
		cf := compiledFilter{col: c, op: f.Op}
		for _, v := range f.Values {
			x, err := convertValue(c, v)
			if err != nil { // ValidateSpec already checked; be safe anyway
				return nil, err
			}
			cf.vals = append(cf.vals, x)
		}
		p.filters = append(p.filters, cf)
	}
	if tr := s.TimeRange; tr != nil {
		name := tr.Column
		if name == "" {
			name = defaultTimeColumn
		}
		p.timeCol, _ = ColumnByName(name)
		p.to = dbTime(now)
		p.from = p.to.Add(-tr.Last)
	}
	for _, k := range s.Sort {
		c, _ := ColumnByName(k.Column)
		p.keys = append(p.keys, sortCol{col: c, desc: k.Descending})
	}
	if len(p.keys) == 0 {
		p.keys = []sortCol{{col: mustColumn(defaultTimeColumn)}}
	}
	// The tie-breaker follows the last key's direction: "newest first" then
	// walks the (org_id, request_time) index backwards (its entries end
	// with the rowid on SQLite) instead of sorting the whole table.
	p.keys = append(p.keys, sortCol{col: idColumn, desc: p.keys[len(p.keys)-1].desc})

	seen := map[string]bool{"id": true}
	for _, c := range p.out {
		if !seen[c.DB] {
			seen[c.DB] = true
			p.fetch = append(p.fetch, c.DB)
		}
	}
	for _, k := range p.keys {
		if !seen[k.col.DB] {
			seen[k.col.DB] = true
			p.fetch = append(p.fetch, k.col.DB)
		}
	}
	return p, nil
}

func mustColumn(name string) Column {
	c, ok := ColumnByName(name)
	if !ok {
		panic("auditlog: no column " + name)
	}
	return c
}

// where applies the filters and the time range.
func (p *plan) where(s *sql.Selector) {
	var ps []*sql.Predicate
	for _, f := range p.filters {
		ps = append(ps, f.predicate(s.C(f.col.DB)))
	}
	if p.timeCol.DB != "" {
		c := s.C(p.timeCol.DB)
		// Bounded above by `now` too, so an export run sees exactly the
		// window it reports, not rows that arrived while it ran.
		ps = append(ps, sql.GTE(c, p.from), sql.LTE(c, p.to))
	}
	if p.seqTo > 0 {
		ps = append(ps, unindexed(s.C("id"), sql.OpGT, p.seqFrom), unindexed(s.C("id"), sql.OpLTE, p.seqTo))
	}
	if len(ps) > 0 {
		s.Where(sql.And(ps...))
	}
}

func (f compiledFilter) predicate(c string) *sql.Predicate {
	switch f.op {
	case OpEquals:
		return sql.EQ(c, f.vals[0])
	case OpNotEquals:
		return sql.NEQ(c, f.vals[0])
	case OpIn:
		return sql.In(c, f.vals...)
	case OpNotIn:
		return sql.NotIn(c, f.vals...)
	case OpContains:
		return containsFold(c, f.vals[0].(string))
	case OpGreaterThan:
		return compare(f.col, c, sql.OpGT, f.vals[0])
	case OpLessThan:
		return compare(f.col, c, sql.OpLT, f.vals[0])
	case OpBetween: // inclusive, like SQL's BETWEEN
		return sql.And(compare(f.col, c, sql.OpGTE, f.vals[0]), compare(f.col, c, sql.OpLTE, f.vals[1]))
	}
	// Unreachable after ValidateSpec; match nothing rather than everything.
	return sql.False()
}

// collate makes PostgreSQL order text by bytes, as SQLite's BINARY collation
// does; otherwise sort order (and GREATER_THAN on text) would depend on the
// server's locale and differ between the two databases.
func collate(b *sql.Builder, c Column) {
	if b.Dialect() == dialect.Postgres && (c.Type == TypeString || c.Type == TypeJSON) {
		b.WriteString(` COLLATE "C"`)
	}
}

// compare is `c op v` with byte-order collation for text.
func compare(col Column, c string, op sql.Op, v any) *sql.Predicate {
	return sql.P(func(b *sql.Builder) {
		b.Ident(c)
		collate(b, col)
		b.WriteOp(op).Arg(v)
	})
}

// containsFold is a case-insensitive substring match that behaves the same on
// both databases: ASCII letters fold, other characters match exactly.
// (ent's ContainsFold uses ILIKE on PostgreSQL, which folds non-ASCII letters
// too, while SQLite's LIKE folds only ASCII.) The LIKE wildcards in the value
// are escaped, with an explicit ESCAPE because SQLite has no default one.
func containsFold(c, sub string) *sql.Predicate {
	pattern := "%" + escapeLike(asciiLower(sub)) + "%"
	return sql.P(func(b *sql.Builder) {
		if b.Dialect() == dialect.Postgres {
			b.WriteString("TRANSLATE(").Ident(c).
				WriteString(", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')")
		} else {
			b.Ident(c) // SQLite's LIKE is already ASCII case-insensitive
		}
		b.WriteString(" LIKE ").Arg(pattern).WriteString(" ESCAPE ").Arg(`\`)
	})
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// order applies ORDER BY.
func (p *plan) order(s *sql.Selector) {
	for _, k := range p.keys {
		s.OrderExprFunc(func(b *sql.Builder) {
			b.Ident(s.C(k.col.DB))
			collate(b, k.col)
			if k.desc {
				b.WriteString(" DESC")
			} else {
				b.WriteString(" ASC")
			}
		})
	}
}

// after keeps the rows that come strictly after the row whose sort values
// are last (keyset pagination): k0 > v0 OR (k0 = v0 AND k1 > v1) OR ...,
// with < for descending keys.
func (p *plan) after(last []any) func(*sql.Selector) {
	return func(s *sql.Selector) {
		ors := make([]*sql.Predicate, 0, len(p.keys))
		for j, k := range p.keys {
			ands := make([]*sql.Predicate, 0, j+1)
			for i := 0; i < j; i++ {
				ands = append(ands, sql.EQ(s.C(p.keys[i].col.DB), last[i]))
			}
			ands = append(ands, compare(k.col, s.C(k.col.DB), strictOp(k.desc), last[j]))
			ors = append(ors, sql.And(ands...))
		}
		// The redundant bound on the first key lets the database use an
		// index range instead of evaluating the OR on every row.
		first := p.keys[0]
		op := sql.OpGTE
		if first.desc {
			op = sql.OpLTE
		}
		s.Where(sql.And(compare(first.col, s.C(first.col.DB), op, last[0]), sql.Or(ors...)))
	}
}

func strictOp(desc bool) sql.Op {
	if desc {
		return sql.OpLT
	}
	return sql.OpGT
}

// Query runs the spec over the organization's AUDIT_LOGS (ctx must carry
// tenant.WithOrg) as of now (the end of a relative time range) and returns
// rows [offset, offset+limit) plus the number of matching rows. limit 0
// returns only the count.
//
// Row values: string for STRING, time.Time (UTC) for TIMESTAMP,
// json.RawMessage for JSON, int64 for INTEGER. No columns in the spec means
// all columns in table order. Without sort keys rows come by REQUEST_TIME
// ascending; the insert sequence always breaks ties, so pages are stable.
func Query(ctx context.Context, client *ent.Client, s Spec, now time.Time, offset, limit int) (*Result, error) {
	return QuerySeq(ctx, client, s, now, 0, 0, offset, limit)
}

// QuerySeq is Query restricted to the insert-sequence window (from, to] (see Stream).
func QuerySeq(ctx context.Context, client *ent.Client, s Spec, now time.Time, from, to int64, offset, limit int) (*Result, error) {
	if offset < 0 || limit < 0 {
		return nil, fmt.Errorf("auditlog: negative offset %d or limit %d", offset, limit)
	}
	p, err := compile(ctx, s, now)
	if err != nil {
		return nil, err
	}
	p.seqFrom, p.seqTo = from, to
	total, err := client.AuditEvent.Query().Where(p.where).Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("count audit events: %w", err)
	}
	res := &Result{Columns: p.out, Rows: [][]any{}, Total: int64(total)}
	if limit == 0 || offset >= total {
		return res, nil
	}
	evs, err := client.AuditEvent.Query().Where(p.where).Order(p.order).
		Offset(offset).Limit(limit).Select(p.fetch...).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("query audit events: %w", err)
	}
	for _, e := range evs {
		res.Rows = append(res.Rows, p.row(e))
	}
	return res, nil
}

func (p *plan) row(e *ent.AuditEvent) []any {
	row := make([]any, len(p.out))
	for i, c := range p.out {
		switch v := field(e, c.DB).(type) {
		case time.Time:
			row[i] = v.UTC()
		case string:
			if c.Type == TypeJSON {
				row[i] = jsonValue(v)
			} else {
				row[i] = v
			}
		default:
			row[i] = v
		}
	}
	return row
}

// jsonValue returns stored JSON as is. Rows are written by Recorder and Seed
// and so are valid, but a bad value must not break an export's encoder.
func jsonValue(s string) json.RawMessage {
	if validJSON([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// field returns the raw database value of column db.
func field(e *ent.AuditEvent, db string) any {
	switch db {
	case "id":
		return e.ID
	case "event_id":
		return e.EventID
	case "request_time":
		return e.RequestTime
	case "event_category":
		return e.EventCategory
	case "event_type":
		return e.EventType
	case "event_status":
		return e.EventStatus
	case "user_id":
		return e.UserID
	case "user_email":
		return e.UserEmail
	case "account_type":
		return e.AccountType
	case "object_type":
		return e.ObjectType
	case "object_id":
		return e.ObjectID
	case "request_id":
		return e.RequestID
	case "ip_address":
		return e.IPAddress
	case "user_agent":
		return e.UserAgent
	case "error_code":
		return e.ErrorCode
	case "metadata":
		return e.Metadata
	}
	panic("auditlog: no field " + db)
}

// OutputColumns returns the columns a spec produces, in order.
func OutputColumns(s Spec) ([]Column, error) {
	if vs := ValidateSpec(s); len(vs) > 0 {
		return nil, &InvalidSpecError{Violations: vs}
	}
	if len(s.Columns) == 0 {
		return append([]Column(nil), Columns...), nil
	}
	out := make([]Column, 0, len(s.Columns))
	for _, name := range s.Columns {
		c, _ := ColumnByName(name)
		out = append(out, c)
	}
	return out, nil
}

// unindexed compares the insert sequence for the sequence window so that
// the (org_id, request_time) index still serves the ORDER BY:
//   - SQLite: "+id" (unary plus) keeps its planner from choosing the
//     (org_id, id) index for the window and then sorting all of it;
//   - PostgreSQL: plain "id" — a custom plan per batch (db.Open sets
//     plan_cache_mode=force_custom_plan) sees the real bounds and walks the
//     request_time index; "+id" there would make every batch a full scan.
func unindexed(col string, op sql.Op, v any) *sql.Predicate {
	return sql.P(func(b *sql.Builder) {
		if b.Dialect() == dialect.SQLite {
			b.WriteString("+")
		}
		b.WriteString(col).WriteOp(op).Arg(v)
	})
}
