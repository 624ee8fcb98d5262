package auditlog

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	"github.com/oklog/ulid/v2"

	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/ids"
)

// seedColumns are the columns Seed writes; id is left to the database so
// that it stays the insert sequence.
var seedColumns = []string{
	"org_id", "event_id", "request_time", "event_category", "event_type",
	"event_status", "user_id", "user_email", "account_type", "object_type",
	"object_id", "request_id", "ip_address", "user_agent", "error_code", "metadata",
}

const (
	// seedRowsPerStmt keeps a multi-row INSERT well under SQLite's limit of
	// 32766 bound variables (and PostgreSQL's 65535).
	seedRowsPerStmt = 1000
	// seedRowsPerTx amortizes commits without making one huge transaction
	// (a long write lock, and an unbounded WAL on SQLite).
	seedRowsPerTx = 50 * seedRowsPerStmt
)

// Seed appends n synthetic but realistic events to org orgID, with request
// times spread over the span before now in ascending order (so insert order
// follows time order, as for real traffic). Everything except event_id is a
// function of seed: event ids must stay unique when the same seed is used
// twice on one database, so they get fresh entropy.
func Seed(ctx context.Context, d *db.DB, orgID string, n int, now time.Time, span time.Duration, seed uint64) error {
	if orgID == "" {
		return errors.New("auditlog: seed without an organization")
	}
	if n <= 0 {
		return nil
	}
	if span < 0 {
		return fmt.Errorf("auditlog: negative seed span %s", span)
	}
	g, err := newGenerator(orgID, seed)
	if err != nil {
		return err
	}
	full := insertSQL(d.Dialect, seedRowsPerStmt)
	args := make([]any, 0, len(seedColumns)*seedRowsPerStmt)
	start := dbTime(now).Add(-span)
	step := float64(span) / float64(n)

	for done := 0; done < n; {
		txRows := min(seedRowsPerTx, n-done)
		err := func() error {
			tx, err := d.SQL.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if d.Dialect == dialect.Postgres {
				// See StableSeq: inserts hold the sequence lock shared.
				if _, err := tx.ExecContext(ctx, sharedSeqLockSQL, seqLockKey); err != nil {
					return err
				}
			}
			stmt, err := tx.PrepareContext(ctx, full)
			if err != nil {
				return err
			}
			defer func() { _ = stmt.Close() }()
			for left := txRows; left > 0; {
				k := min(seedRowsPerStmt, left)
				args = args[:0]
				for i := range k {
					// Each event gets its own slot of the span, jittered
					// inside it, so times ascend without sorting.
					at := done + txRows - left + i
					t := start.Add(time.Duration((float64(at) + g.r.Float64()) * step))
					args = g.appendRow(args, dbTime(t))
				}
				if k == seedRowsPerStmt {
					_, err = stmt.ExecContext(ctx, args...)
				} else {
					_, err = tx.ExecContext(ctx, insertSQL(d.Dialect, k), args...)
				}
				if err != nil {
					return err
				}
				left -= k
			}
			return tx.Commit()
		}()
		if err != nil {
			return fmt.Errorf("seed audit events: %w", err)
		}
		done += txRows
	}
	if d.Dialect == dialect.Postgres {
		// Autovacuum analyzes the table only some time after a bulk load;
		// until then the planner underestimates the rows and Stream's keyset
		// batches fall back to sorting the whole org (100x slower).
		if _, err := d.SQL.ExecContext(ctx, "ANALYZE audit_logs"); err != nil {
			return fmt.Errorf("analyze audit events: %w", err)
		}
	}
	return nil
}

// insertSQL is a multi-row INSERT with the dialect's placeholders.
func insertSQL(dia string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO audit_logs (")
	b.WriteString(strings.Join(seedColumns, ", "))
	b.WriteString(") VALUES ")
	p := 0
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range seedColumns {
			if c > 0 {
				b.WriteByte(',')
			}
			p++
			if dia == dialect.Postgres {
				b.WriteString("$" + strconv.Itoa(p))
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
	}
	return b.String()
}

type seedUser struct {
	id, email, accountType, ua string
	ips                        []string
	keyID                      string
}

// eventKind is a kind of API call with its relative frequency.
type eventKind struct {
	category, typ, method, objectType string
	weight                            int
	failCodes                         []string
}

var seedKinds = []eventKind{
	{"ACCESS", "API_KEY_AUTH", "", "API_KEY", 30, []string{"UNAUTHENTICATED"}},
	{"OBJECT_INTERACTION", "QUERY_ELEMENT", "WorkbookService/QueryElement", "WORKBOOK", 25, []string{"PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT"}},
	{"OBJECT_INTERACTION", "GET_WORKBOOK", "WorkbookService/GetWorkbook", "WORKBOOK", 8, []string{"NOT_FOUND"}},
	{"OBJECT_INTERACTION", "EXPLORE_TABLE", "WorkbookService/ExploreTable", "CONNECTION", 4, []string{"PERMISSION_DENIED"}},
	{"OBJECT_INTERACTION", "UPDATE_WORKBOOK", "WorkbookService/UpdateWorkbook", "WORKBOOK", 3, []string{"INVALID_ARGUMENT", "PERMISSION_DENIED"}},
	{"OBJECT_INTERACTION", "SAVE_WORKBOOK_AS", "WorkbookService/SaveWorkbookAs", "WORKBOOK", 1, []string{"ALREADY_EXISTS"}},
	{"PUBLIC_API", "LIST_WORKBOOKS", "WorkbookService/ListWorkbooks", "", 5, []string{"INVALID_ARGUMENT"}},
	{"PUBLIC_API", "LIST_SCHEDULES", "ScheduleService/ListSchedules", "", 4, []string{"INVALID_ARGUMENT"}},
	{"PUBLIC_API", "LIST_EXPORT_RUNS", "ScheduleService/ListExportRuns", "SCHEDULE", 3, []string{"NOT_FOUND"}},
	{"EXPORTS", "EXPORT_RUN_FINISHED", "", "EXPORT_RUN", 8, []string{"PERMISSION_DENIED", "UNAVAILABLE", "DEADLINE_EXCEEDED"}},
	{"EXPORTS", "SEND_NOW", "ScheduleService/SendNow", "SCHEDULE", 2, []string{"FAILED_PRECONDITION", "PERMISSION_DENIED"}},
	{"EXPORTS", "CREATE_SCHEDULE", "ScheduleService/CreateSchedule", "SCHEDULE", 1, []string{"INVALID_ARGUMENT"}},
	{"EXPORTS", "UPDATE_SCHEDULE", "ScheduleService/UpdateSchedule", "SCHEDULE", 1, []string{"INVALID_ARGUMENT", "NOT_FOUND"}},
	{"EXPORTS", "PAUSE_SCHEDULE", "ScheduleService/PauseSchedule", "SCHEDULE", 1, []string{"NOT_FOUND"}},
	{"INTEGRATIONS", "LIST_STORAGE_INTEGRATIONS", "IntegrationService/ListStorageIntegrations", "", 1, []string{"PERMISSION_DENIED"}},
	{"INTEGRATIONS", "CREATE_STORAGE_INTEGRATION", "IntegrationService/CreateStorageIntegration", "STORAGE_INTEGRATION", 1, []string{"PERMISSION_DENIED", "INVALID_ARGUMENT"}},
	{"INTEGRATIONS", "UPDATE_STORAGE_INTEGRATION", "IntegrationService/UpdateStorageIntegration", "STORAGE_INTEGRATION", 1, []string{"PERMISSION_DENIED"}},
	{"CONNECTION", "LIST_CONNECTIONS", "WorkbookService/ListConnections", "", 1, []string{"UNAVAILABLE"}},
	{"CONNECTION", "GRANT_CONNECTION_ACCESS", "AccountService/GrantConnectionAccess", "CONNECTION", 1, []string{"PERMISSION_DENIED"}},
	{"USER_ACCOUNT", "CREATE_USER", "AccountService/CreateUser", "USER", 1, []string{"ALREADY_EXISTS", "PERMISSION_DENIED"}},
	{"USER_ACCOUNT", "CREATE_API_KEY", "AccountService/CreateApiKey", "API_KEY", 1, []string{"PERMISSION_DENIED"}},
	{"USER_ACCOUNT", "REVOKE_API_KEY", "AccountService/RevokeApiKey", "API_KEY", 1, []string{"NOT_FOUND"}},
	{"ACCOUNT_TYPE", "UPDATE_ACCOUNT_TYPE", "AccountService/UpdateUser", "USER", 1, []string{"PERMISSION_DENIED", "FAILED_PRECONDITION"}},
}

var (
	seedFirst = []string{"ada", "alan", "grace", "linus", "margaret", "dennis", "barbara", "ken",
		"frances", "edsger", "radia", "tim", "hedy", "john", "katherine", "donald"}
	seedLast = []string{"lovelace", "turing", "hopper", "torvalds", "hamilton", "ritchie", "liskov",
		"thompson", "allen", "dijkstra", "perlman", "berners-lee", "lamarr", "backus", "johnson", "knuth"}
	seedAgents = []string{
		"auditctl/1.4.0 (linux; amd64)",
		"grpcurl/v1.9.1 grpc-go/1.64.0",
		"curl/8.5.0",
		"python-requests/2.32.3",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	}
	seedNets      = []string{"192.0.2.", "198.51.100.", "203.0.113."} // RFC 5737 documentation ranges
	seedProviders = []string{"PROVIDER_S3", "PROVIDER_GCS", "PROVIDER_AZURE_BLOB"}
	seedFormats   = []string{"FORMAT_CSV", "FORMAT_JSONL", "FORMAT_PARQUET"}
)

// generator produces seed rows. All choices come from r (seeded); event ids
// from ent (fresh entropy).
type generator struct {
	org                                string
	r                                  *rand.Rand
	idr                                *rand.Rand // object ids: separate stream, also seeded
	ent                                *ulid.MonotonicEntropy
	users                              []seedUser
	workbooks, schedules, integrations []string
	totalWeight                        int
	buf                                []byte
}

func newGenerator(org string, seed uint64) (*generator, error) {
	var salt [32]byte
	if _, err := crand.Read(salt[:]); err != nil {
		return nil, err
	}
	g := &generator{
		org: org,
		r:   rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		idr: rand.New(rand.NewPCG(seed, 0x632be59bd9b4e019)),
		ent: ulid.Monotonic(rand.NewChaCha8(salt), 0),
	}
	for _, k := range seedKinds {
		g.totalWeight += k.weight
	}
	// ~50 users with distinct names; mostly viewers, a few admins.
	perm := g.r.Perm(len(seedFirst) * len(seedLast))
	for _, p := range perm[:50] {
		first, last := seedFirst[p/len(seedLast)], seedLast[p%len(seedLast)]
		u := seedUser{
			id:          g.objectID(ids.User),
			email:       first + "." + last + "@example.com",
			accountType: []string{"ADMIN", "CREATOR", "CREATOR", "VIEWER", "VIEWER", "VIEWER"}[g.r.IntN(6)],
			ua:          seedAgents[g.r.IntN(len(seedAgents))],
			keyID:       g.objectID(ids.APIKey),
		}
		for range 1 + g.r.IntN(2) {
			u.ips = append(u.ips, seedNets[g.r.IntN(len(seedNets))]+strconv.Itoa(1+g.r.IntN(254)))
		}
		g.users = append(g.users, u)
	}
	for range 40 {
		g.workbooks = append(g.workbooks, g.objectID(ids.Workbook))
	}
	for range 25 {
		g.schedules = append(g.schedules, g.objectID(ids.Schedule))
	}
	for range 5 {
		g.integrations = append(g.integrations, g.objectID(ids.Integration))
	}
	return g, nil
}

// objectID makes a deterministic prefixed ULID from the seeded stream.
func (g *generator) objectID(prefix string) string {
	var id ulid.ULID
	binary.BigEndian.PutUint64(id[0:8], g.idr.Uint64())
	binary.BigEndian.PutUint64(id[8:16], g.idr.Uint64())
	id[0] &= 0x07 // keep the timestamp part valid (< 2^48 ms)
	return prefix + strings.ToLower(id.String())
}

func (g *generator) kind() *eventKind {
	w := g.r.IntN(g.totalWeight)
	for i := range seedKinds {
		if w < seedKinds[i].weight {
			return &seedKinds[i]
		}
		w -= seedKinds[i].weight
	}
	return &seedKinds[0]
}

// appendRow appends one event's column values (in seedColumns order).
func (g *generator) appendRow(args []any, t time.Time) []any {
	k := g.kind()
	// Users are not equally active: squaring skews towards the first ones.
	f := g.r.Float64()
	u := &g.users[int(f*f*float64(len(g.users)))]
	status, errCode := StatusSuccess, ""
	if g.r.IntN(100) < 5 {
		status, errCode = StatusFailure, k.failCodes[g.r.IntN(len(k.failCodes))]
	}
	ip, ua := u.ips[g.r.IntN(len(u.ips))], u.ua
	method := "/auditexport.v1." + k.method

	m := g.buf[:0]
	m = append(m, '{')
	var objID string
	switch k.objectType {
	case "API_KEY":
		objID = u.keyID
		m = jsonField(m, "api_key_id", u.keyID)
	case "WORKBOOK":
		objID = g.workbooks[g.r.IntN(len(g.workbooks))]
		if k.typ == "QUERY_ELEMENT" {
			m = jsonInt(m, "page_size", int64([]int{50, 100, 500, 1000}[g.r.IntN(4)]))
			m = jsonInt(m, "total_rows", int64(g.r.IntN(250000)))
		}
	case "SCHEDULE":
		objID = g.schedules[g.r.IntN(len(g.schedules))]
	case "EXPORT_RUN":
		// Runs are started by the scheduler on behalf of the owner.
		objID, ip, ua, method = g.objectID(ids.Run), "", "auditexport-scheduler", ""
		m = jsonField(m, "schedule_id", g.schedules[g.r.IntN(len(g.schedules))])
		m = jsonField(m, "format", seedFormats[g.r.IntN(len(seedFormats))])
		if status == StatusSuccess {
			rows := int64(g.r.IntN(500000))
			m = jsonInt(m, "rows", rows)
			m = jsonInt(m, "bytes", rows*(180+int64(g.r.IntN(60))))
		}
	case "STORAGE_INTEGRATION":
		objID = g.integrations[g.r.IntN(len(g.integrations))]
		m = jsonField(m, "provider", seedProviders[g.r.IntN(len(seedProviders))])
	case "CONNECTION":
		objID = ConnectionID
	case "USER":
		objID = g.users[g.r.IntN(len(g.users))].id
	}
	if method != "" {
		m = jsonField(m, "method", method)
	}
	m = jsonInt(m, "duration_ms", int64(1+g.r.ExpFloat64()*40))
	m[len(m)-1] = '}' // replaces the trailing comma
	g.buf = m

	id, err := ulid.New(ulid.Timestamp(t), g.ent)
	if err != nil { // only if more than 2^80 ids fall into one millisecond
		id = ulid.MustNew(ulid.Timestamp(t), crand.Reader)
	}
	reqID := fmt.Sprintf("%016x%016x", g.r.Uint64(), g.r.Uint64())
	return append(args, g.org, ids.Event+strings.ToLower(id.String()), t, k.category, k.typ,
		status, u.id, u.email, u.accountType, k.objectType, objID, reqID, ip, ua, errCode, string(m))
}

// jsonField appends "key":"value", for keys and values that need no escaping.
func jsonField(b []byte, k, v string) []byte {
	b = append(b, '"')
	b = append(b, k...)
	b = append(b, `":"`...)
	b = append(b, v...)
	return append(b, `",`...)
}

func jsonInt(b []byte, k string, v int64) []byte {
	b = append(b, '"')
	b = append(b, k...)
	b = append(b, `":`...)
	b = strconv.AppendInt(b, v, 10)
	return append(b, ',')
}
