package db

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Runs records export runs' starts and outcomes, group-committed (Group),
// and typed: a batch's starts are one UPDATE, its outcomes one
// UPDATE of the runs and one of their schedules, whatever the batch's size.
// On PostgreSQL the three are one statement (data-modifying WITH queries
// over arrays): one round trip per batch, where a statement per run was
// what bounded how fast the runs of a fan-out (thousands of schedules due
// at the same minute) could start and end. On SQLite (no round trips) they
// are statements of one transaction.
//
// The statements bypass ent's hooks and say themselves what those would
// have added: the organization (every row is matched on its caller's org
// too) and update_time on the run (the schedule's bookkeeping leaves its
// update_time alone, as revision.Bookkeeping does).
type Runs struct {
	client  *ent.Client
	dialect string
	group   *Group[*runWrite]
}

// newRuns returns a Runs committing through client, parallel grouped
// writes at once: 1 on SQLite (one writer), a few on PostgreSQL, where
// concurrent writes proceed side by side.
func newRuns(client *ent.Client, dia string, parallel int) *Runs {
	r := &Runs{client: client, dialect: dia}
	r.group = NewGroup(maxTxGroup, parallel, r.commit)
	return r
}

// RunStart is a run's start as recorded when it begins executing: state
// RUNNING with its plan.
type RunStart struct {
	RunID                  string
	Phase                  string
	Time                   time.Time // start and heartbeat
	ObjectURI              string
	FromSeq, ToSeq         int64
	PeriodStart, PeriodEnd time.Time
}

// ScheduleEffect is what a run's outcome does to its schedule's failure
// streak.
type ScheduleEffect int

const (
	// ScheduleKeep records the run as the schedule's last only (a canceled run).
	ScheduleKeep ScheduleEffect = iota
	// ScheduleSuccess ends the failure streak and sets the last success time.
	ScheduleSuccess
	// ScheduleFailure adds one to the failure streak, counted in the
	// database (overlapping runs of one schedule each count theirs).
	ScheduleFailure
)

// Watermark moves an incremental schedule's watermark from From to To,
// only if it is still at From (compare-and-set).
type Watermark struct{ From, To int64 }

// RunEnd is a run's outcome and its schedule's bookkeeping, recorded in one
// transaction: both or neither.
type RunEnd struct {
	RunID string
	State string    // the final state, also the phase
	Time  time.Time // finish and heartbeat; the start too if the run never started
	Rows  int64
	Bytes int64
	// Checksum and Note are written when set; a nil pointer keeps the
	// stored value (so do ObjectURI and Error).
	Checksum, Note, ObjectURI *string
	Error                     *RunEndError
	// ScheduleID "" records no schedule bookkeeping.
	ScheduleID string
	Effect     ScheduleEffect
	Watermark  *Watermark // nil: none
}

// RunEndError is a failed run's error as stored on it.
type RunEndError struct{ Code, Message, ProviderMessage string }

// RunEnded is what recording an outcome returns: the run and its schedule
// as they are after it.
type RunEnded struct {
	Run EndedRun
	// Schedule is nil when RunEnd had no schedule or it was deleted
	// meanwhile (the run's outcome still counts).
	Schedule *EndedSchedule
	// WatermarkMoved: the compare-and-set of RunEnd.Watermark succeeded.
	WatermarkMoved bool
}

// EndedRun is a finished run's row, the columns its audit event needs.
type EndedRun struct {
	ID, ScheduleID, RequestedBy, Trigger, ObjectURI string
	Attempt                                         int
	Rows, Bytes                                     int64
}

// EndedSchedule is a schedule's state after a run's outcome was recorded.
type EndedSchedule struct {
	ID                  string
	State               string
	ConsecutiveFailures int
}

// maxTxGroup bounds the runs written together.
const maxTxGroup = 128

// txGroupTimeout bounds one grouped write, detached from every caller's
// cancellation.
const txGroupTimeout = 30 * time.Second

// ErrRunNotFound: the run to record is not (or no longer) stored in the
// caller's organization.
var ErrRunNotFound = errors.New("export run not found")

// Start records a run's start and returns once it committed.
func (r *Runs) Start(ctx context.Context, s RunStart) error {
	w, err := newRunWrite(ctx)
	if err != nil {
		return err
	}
	w.start = &s
	if err := r.group.Add(w); err != nil {
		return fmt.Errorf("mark run running: %w", err)
	}
	if !w.found {
		return fmt.Errorf("mark run running: run %s: %w", s.RunID, ErrRunNotFound)
	}
	return nil
}

// End records a run's outcome with its schedule's bookkeeping and returns
// once they committed. A run that is not stored gets ErrRunNotFound, and
// its schedule is left as it was.
func (r *Runs) End(ctx context.Context, e RunEnd) (RunEnded, error) {
	w, err := newRunWrite(ctx)
	if err != nil {
		return RunEnded{}, err
	}
	w.end = &e
	if err := r.group.Add(w); err != nil {
		return RunEnded{}, fmt.Errorf("recording run outcome: %w", err)
	}
	if !w.found {
		return RunEnded{}, fmt.Errorf("recording run outcome: run %s: %w", e.RunID, ErrRunNotFound)
	}
	return w.ended, nil
}

// runWrite is one caller's start or end, and what its write found.
type runWrite struct {
	org   *string // nil: a system context, matched on the id alone
	start *RunStart
	end   *RunEnd

	found bool // the run's row was updated
	ended RunEnded
}

func newRunWrite(ctx context.Context) (*runWrite, error) {
	w := &runWrite{}
	if org, ok := tenant.Org(ctx); ok {
		w.org = &org
	} else if !tenant.IsSystem(ctx) {
		return nil, errors.New("recording an export run without an organization in context")
	}
	return w, nil
}

// commit writes a batch: its starts, its outcomes, and the outcomes'
// schedules' bookkeeping, atomically (a run's outcome with its schedule's,
// or neither). A run that is not stored (in its caller's organization) is
// not written, its schedule neither, and only its own caller hears of it
// (found stays false). A batch that fails is written again item by item
// (Group), so an error here may be any one item's.
func (r *Runs) commit(ws []*runWrite) error {
	ctx, cancel := context.WithTimeout(tenant.System(context.Background()), txGroupTimeout)
	defer cancel()
	var starts, ends []*runWrite
	for _, w := range ws {
		w.found, w.ended = false, RunEnded{}
		if w.start != nil {
			starts = append(starts, w)
		} else {
			ends = append(ends, w)
		}
	}
	// One schedule may end several runs of a batch (overlapping runs): an
	// UPDATE … FROM applies one of a row's matches only, so its bookkeeping
	// is written in rounds that take each schedule once.
	rounds := scheduleRounds(ends)
	if r.dialect == dialect.Postgres && len(rounds) <= 1 {
		// The usual batch: one statement, its own transaction — one round
		// trip instead of BEGIN, a statement per part, COMMIT.
		return r.writePG(ctx, r.client, starts, ends, rounds)
	}
	return WithTx(ctx, r.client, func(tx *ent.Client) error {
		if r.dialect == dialect.Postgres {
			return r.writePG(ctx, tx, starts, ends, rounds)
		}
		for _, c := range chunks(starts) {
			if err := r.writeStarts(ctx, tx, c); err != nil {
				return err
			}
		}
		for _, c := range chunks(ends) {
			if err := r.writeEnds(ctx, tx, c); err != nil {
				return err
			}
		}
		for _, round := range rounds {
			for _, c := range chunks(found(round)) {
				if err := r.writeSchedules(ctx, tx, c); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// found is the writes of ws whose run was written.
func found(ws []*runWrite) []*runWrite {
	var out []*runWrite
	for _, w := range ws {
		if w.found {
			out = append(out, w)
		}
	}
	return out
}

// chunks splits ws into statements of power-of-two sizes (13 = 8 + 4 + 1),
// so that a statement's text is one of a few (SQLite's statement cache
// keeps prepared statements per text).
func chunks(ws []*runWrite) [][]*runWrite {
	var out [][]*runWrite
	for len(ws) > 0 {
		n := 1 << (bits.Len(uint(len(ws))) - 1)
		out = append(out, ws[:n])
		ws = ws[n:]
	}
	return out
}

// scheduleRounds groups the ends that have a schedule so that no round
// holds one schedule twice, in the batch's order.
func scheduleRounds(ends []*runWrite) [][]*runWrite {
	var rounds [][]*runWrite
	seen := map[string]int{} // schedule -> rounds holding it
	for _, w := range ends {
		if w.end.ScheduleID == "" {
			continue
		}
		k := seen[w.end.ScheduleID]
		seen[w.end.ScheduleID] = k + 1
		if k == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[k] = append(rounds[k], w)
	}
	return rounds
}

// scheduleSet is a run's bookkeeping on its schedule (columns c_*): its
// last run; a success ends the failure streak and sets the last success
// time, a failure adds one — once per run: a run already recorded as the
// schedule's last (its write committed, the answer lost, written again)
// adds nothing; an incremental success moves the watermark
// from the value the run started at (compare-and-set; c_wfrom NULL: none).
var scheduleSet = `"last_run_id" = c_run,
"consecutive_failures" = CASE c_effect WHEN ` + strconv.Itoa(int(ScheduleSuccess)) + ` THEN 0
  WHEN ` + strconv.Itoa(int(ScheduleFailure)) + ` THEN CASE WHEN "last_run_id" = c_run THEN "consecutive_failures" ELSE "consecutive_failures" + 1 END
  ELSE "consecutive_failures" END,
"last_success_time" = CASE c_effect WHEN ` + strconv.Itoa(int(ScheduleSuccess)) + ` THEN c_t ELSE "last_success_time" END,
"watermark" = CASE WHEN c_wfrom IS NOT NULL AND "watermark" = c_wfrom THEN c_wto ELSE "watermark" END`

// startSet is a run's start (columns s_*).
const startSet = `"state" = 'RUNNING', "phase" = s_phase, "start_time" = s_t, "heartbeat_time" = s_t,
"object_uri" = s_uri, "from_seq" = s_from, "to_seq" = s_to, "period_start" = s_ps, "period_end" = s_pe`

// endSet is a run's outcome (columns e_*): a run that never started
// starts when it ends; a NULL keeps the stored value.
const endSet = `"state" = e_state, "phase" = e_state, "finish_time" = e_t, "heartbeat_time" = e_t,
"start_time" = COALESCE("start_time", e_t), "rows" = e_rows, "bytes" = e_bytes,
"checksum" = COALESCE(e_sum, "checksum"), "note" = COALESCE(e_note, "note"), "object_uri" = COALESCE(e_uri, "object_uri"),
"error_code" = COALESCE(e_ecode, "error_code"), "error_message" = COALESCE(e_emsg, "error_message"),
"provider_message" = COALESCE(e_pmsg, "provider_message")`

const endReturning = `"id", "schedule_id", "requested_by", "trigger", "object_uri", "attempt", "rows", "bytes"`

var (
	startCols    = []string{"s_id", "s_org", "s_phase", "s_t", "s_uri", "s_from", "s_to", "s_ps", "s_pe"}
	startTypes   = []string{"text", "text", "text", "timestamptz", "text", "bigint", "bigint", "timestamptz", "timestamptz"}
	endCols      = []string{"e_id", "e_org", "e_state", "e_t", "e_rows", "e_bytes", "e_sum", "e_note", "e_uri", "e_ecode", "e_emsg", "e_pmsg"}
	endTypes     = []string{"text", "text", "text", "timestamptz", "bigint", "bigint", "text", "text", "text", "text", "text", "text"}
	scheduleCols = []string{"c_id", "c_org", "c_run", "c_effect", "c_t", "c_wfrom", "c_wto"}
	schedTypes   = []string{"text", "text", "text", "integer", "timestamptz", "bigint", "bigint"}
)

func (w *runWrite) startRow() []any {
	s := w.start
	return []any{s.RunID, orgArg(w), s.Phase, s.Time, s.ObjectURI, s.FromSeq, s.ToSeq, s.PeriodStart, s.PeriodEnd}
}

func (w *runWrite) endRow() []any {
	e := w.end
	var code, msg, pmsg any
	if e.Error != nil {
		code, msg, pmsg = e.Error.Code, e.Error.Message, e.Error.ProviderMessage
	}
	return []any{e.RunID, orgArg(w), e.State, e.Time, e.Rows, e.Bytes, strArg(e.Checksum), strArg(e.Note), strArg(e.ObjectURI), code, msg, pmsg}
}

func (w *runWrite) scheduleRow() []any {
	e := w.end
	var from, to any
	if e.Watermark != nil && e.Effect == ScheduleSuccess {
		from, to = e.Watermark.From, e.Watermark.To
	}
	return []any{e.ScheduleID, orgArg(w), e.RunID, int(e.Effect), e.Time, from, to}
}

// scheduleWritten records w's schedule as written: s, whose watermark
// was before at old.
func (w *runWrite) scheduleWritten(s EndedSchedule, old int64) {
	w.ended.Schedule = &s
	if m := w.end.Watermark; m != nil && w.end.Effect == ScheduleSuccess {
		w.ended.WatermarkMoved = old == m.From
	}
}

func orgArg(w *runWrite) any {
	if w.org == nil {
		return nil
	}
	return *w.org
}

func strArg(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// orgMatch matches a row on its caller's organization (NULL: a system
// caller, any organization); prefix is the columns' (s, e or c).
func orgMatch(prefix string) string {
	return `("org_id" = ` + prefix + `_org OR ` + prefix + `_org IS NULL)`
}

// --- PostgreSQL: one statement over arrays -------------------------------

// pgBatch is the PostgreSQL statement: the starts (s), the outcomes (e),
// and the bookkeeping of the outcomes' schedules (c) joined to the runs e
// wrote — or, for a later round of a batch ending one schedule's runs
// more than once, to the runs named in $32 — each a data-modifying WITH
// query over arrays (unnest), so its text is the same for every batch and
// stays prepared. The rows it returns say what was written.
var pgBatch = func() string {
	n := 0
	unnest := func(cols, types []string) string {
		var b strings.Builder
		b.WriteString("unnest(")
		for i, t := range types {
			if i > 0 {
				b.WriteString(", ")
			}
			n++
			fmt.Fprintf(&b, "$%d::%s[]", n, t)
		}
		b.WriteString(") AS t(" + strings.Join(cols, ", ") + ")")
		return b.String()
	}
	cids := n + len(startCols) + len(endCols) + 1 // the schedules' first array: their ids
	s := `WITH s AS (UPDATE "export_runs" SET ` + startSet + `, "update_time" = $0::timestamptz
FROM ` + unnest(startCols, startTypes) + ` WHERE "id" = s_id AND ` + orgMatch("s") + ` RETURNING "id"),
e AS (UPDATE "export_runs" SET ` + endSet + `, "update_time" = $0::timestamptz
FROM ` + unnest(endCols, endTypes) + ` WHERE "id" = e_id AND ` + orgMatch("e") + ` RETURNING ` + endReturning + `, "org_id"),
c AS (UPDATE "schedules" SET ` + scheduleSet + `
FROM ` + unnest(scheduleCols, schedTypes) + `
JOIN (SELECT "id" AS o_id, "watermark" AS o_wm FROM "schedules" WHERE "id" = ANY($CIDS::text[]) ORDER BY "id" FOR UPDATE) AS o ON o_id = c_id
WHERE "id" = c_id AND ` + orgMatch("c") + `
AND (c_run IN (SELECT "id" FROM e WHERE "org_id" = c_org OR c_org IS NULL) OR c_run = ANY($LAST::text[]))
RETURNING c_run, "id", "state", "consecutive_failures", o_wm)
SELECT 'S', "id", '', '', '', '', 0::bigint, 0::bigint, 0::bigint FROM s
UNION ALL SELECT 'E', "id", "schedule_id", "requested_by", "trigger", "object_uri", "attempt", "rows", "bytes" FROM e
UNION ALL SELECT 'C', c_run, "id", "state", '', '', "consecutive_failures", o_wm, 0 FROM c`
	s = strings.Replace(s, "$LAST", "$"+strconv.Itoa(n+1), 1)
	s = strings.Replace(s, "$CIDS", "$"+strconv.Itoa(cids), 1)
	return strings.ReplaceAll(s, "$0::", "$"+strconv.Itoa(n+2)+"::")
}()

// pgArrays turns rows of ws into one array argument per column.
func pgArrays(ws []*runWrite, ncols int, row func(*runWrite) []any) []any {
	cols := make([][]any, ncols)
	for _, w := range ws {
		for j, v := range row(w) {
			cols[j] = append(cols[j], v)
		}
	}
	out := make([]any, ncols)
	for j, c := range cols {
		if c == nil {
			c = []any{}
		}
		out[j] = c
	}
	return out
}

// writePG writes starts, ends, and the first of the ends' schedule rounds
// (scheduleRounds) with one statement on q; each later round, for the runs
// the first wrote, with one more (q must then be a transaction).
func (r *Runs) writePG(ctx context.Context, q *ent.Client, starts, ends []*runWrite, rounds [][]*runWrite) error {
	var first []*runWrite
	if len(rounds) > 0 {
		first, rounds = rounds[0], rounds[1:]
	}
	if err := r.execPG(ctx, q, starts, ends, first, nil); err != nil {
		return err
	}
	for _, round := range rounds {
		if round = found(round); len(round) > 0 {
			ids := make([]string, len(round))
			for i, w := range round {
				ids[i] = w.end.RunID
			}
			if err := r.execPG(ctx, q, nil, nil, round, ids); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Runs) execPG(ctx context.Context, q *ent.Client, starts, ends, scheds []*runWrite, confirmed []string) error {
	args := pgArrays(starts, len(startCols), (*runWrite).startRow)
	args = append(args, pgArrays(ends, len(endCols), (*runWrite).endRow)...)
	args = append(args, pgArrays(scheds, len(scheduleCols), (*runWrite).scheduleRow)...)
	if confirmed == nil {
		confirmed = []string{}
	}
	args = append(args, confirmed, time.Now().UTC())
	rows, err := q.QueryContext(ctx, pgBatch, args...)
	if err != nil {
		return fmt.Errorf("recording runs: %w", err)
	}
	defer rows.Close()
	runs := index(append(starts[:len(starts):len(starts)], ends...), func(w *runWrite) string { return w.runID() })
	for rows.Next() {
		var kind, id, a, b, c, d string
		var n1, n2, n3 int64
		if err := rows.Scan(&kind, &id, &a, &b, &c, &d, &n1, &n2, &n3); err != nil {
			return err
		}
		w := runs[id]
		switch {
		case w == nil && kind == "C":
			// A later round: its runs were written by the first.
			for _, s := range scheds {
				if s.end.RunID == id {
					w = s
				}
			}
		case w == nil:
			return fmt.Errorf("recording runs: the database returned run %s, not in the batch", id)
		}
		switch kind {
		case "S":
			w.found = true
		case "E":
			w.found = true
			w.ended.Run = EndedRun{ID: id, ScheduleID: a, RequestedBy: b, Trigger: c, ObjectURI: d, Attempt: int(n1), Rows: n2, Bytes: n3}
		case "C":
			if w != nil {
				w.scheduleWritten(EndedSchedule{ID: a, State: b, ConsecutiveFailures: int(n1)}, n2)
			}
		}
	}
	return rows.Err()
}

func (w *runWrite) runID() string {
	if w.start != nil {
		return w.start.RunID
	}
	return w.end.RunID
}

// --- SQLite: statements of one transaction over VALUES -------------------

// values builds `WITH v(cols) AS (VALUES (…), …) ` for rows of
// len(cols) arguments each.
type values struct {
	b    strings.Builder
	args []any
}

func (v *values) with(cols []string, ws []*runWrite, row func(*runWrite) []any) {
	v.b.WriteString("WITH v(" + strings.Join(cols, ", ") + ") AS (VALUES ")
	for i, w := range ws {
		if i > 0 {
			v.b.WriteString(", ")
		}
		v.b.WriteByte('(')
		for j, a := range row(w) {
			if j > 0 {
				v.b.WriteString(", ")
			}
			v.args = append(v.args, a)
			v.b.WriteByte('?')
		}
		v.b.WriteByte(')')
	}
	v.b.WriteString(") ")
}

func (r *Runs) writeStarts(ctx context.Context, tx *ent.Client, ws []*runWrite) error {
	var v values
	v.with(startCols, ws, (*runWrite).startRow)
	v.b.WriteString(`UPDATE "export_runs" SET ` + startSet + `, "update_time" = ? FROM v WHERE "id" = s_id AND ` + orgMatch("s") + ` RETURNING "id"`)
	v.args = append(v.args, time.Now().UTC())
	rows, err := tx.QueryContext(ctx, v.b.String(), v.args...)
	if err != nil {
		return fmt.Errorf("mark runs running: %w", err)
	}
	defer rows.Close()
	byID := index(ws, (*runWrite).runID)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		if w := byID[id]; w != nil {
			w.found = true
		}
	}
	return rows.Err()
}

func (r *Runs) writeEnds(ctx context.Context, tx *ent.Client, ws []*runWrite) error {
	var v values
	v.with(endCols, ws, (*runWrite).endRow)
	v.b.WriteString(`UPDATE "export_runs" SET ` + endSet + `, "update_time" = ? FROM v WHERE "id" = e_id AND ` + orgMatch("e") + ` RETURNING ` + endReturning)
	v.args = append(v.args, time.Now().UTC())
	rows, err := tx.QueryContext(ctx, v.b.String(), v.args...)
	if err != nil {
		return fmt.Errorf("recording run outcomes: %w", err)
	}
	defer rows.Close()
	byID := index(ws, (*runWrite).runID)
	for rows.Next() {
		var e EndedRun
		if err := rows.Scan(&e.ID, &e.ScheduleID, &e.RequestedBy, &e.Trigger, &e.ObjectURI, &e.Attempt, &e.Rows, &e.Bytes); err != nil {
			return err
		}
		if w := byID[e.ID]; w != nil {
			w.found = true
			w.ended.Run = e
		}
	}
	return rows.Err()
}

func (r *Runs) writeSchedules(ctx context.Context, tx *ent.Client, ws []*runWrite) error {
	// The watermarks before (the transaction is SQLite's only writer), to
	// tell a compare-and-set that moved one from one that did not.
	olds := map[string]int64{}
	for _, w := range ws {
		if w.end.Watermark == nil {
			continue
		}
		rows, err := tx.QueryContext(ctx, `SELECT "watermark" FROM "schedules" WHERE "id" = ?`, w.end.ScheduleID)
		if err != nil {
			return fmt.Errorf("reading a schedule's watermark: %w", err)
		}
		for rows.Next() {
			var old int64
			if err := rows.Scan(&old); err != nil {
				_ = rows.Close()
				return err
			}
			olds[w.end.ScheduleID] = old
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
	}
	var v values
	v.with(scheduleCols, ws, (*runWrite).scheduleRow)
	v.b.WriteString(`UPDATE "schedules" SET ` + scheduleSet + ` FROM v WHERE "id" = c_id AND ` + orgMatch("c") +
		` RETURNING "id", "state", "consecutive_failures"`)
	rows, err := tx.QueryContext(ctx, v.b.String(), v.args...)
	if err != nil {
		return fmt.Errorf("recording runs on their schedules: %w", err)
	}
	defer rows.Close()
	byID := index(ws, func(w *runWrite) string { return w.end.ScheduleID }) // once each in a round
	for rows.Next() {
		var s EndedSchedule
		if err := rows.Scan(&s.ID, &s.State, &s.ConsecutiveFailures); err != nil {
			return err
		}
		if w := byID[s.ID]; w != nil {
			w.scheduleWritten(s, olds[s.ID])
		}
	}
	return rows.Err()
}

func index(ws []*runWrite, key func(*runWrite) string) map[string]*runWrite {
	m := make(map[string]*runWrite, len(ws))
	for _, w := range ws {
		m[key(w)] = w
	}
	return m
}
