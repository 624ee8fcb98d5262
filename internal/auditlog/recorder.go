package auditlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Event statuses.
const (
	StatusSuccess = "SUCCESS"
	StatusFailure = "FAILURE"
)

// Redacted replaces the value of a metadata key that may hold a secret.
const Redacted = "[REDACTED]"

// maxMetadataDepth bounds the nesting Record keeps; deeper values are
// replaced, so a pathological map cannot make the scrubber recurse forever
// or a row grow without bound.
const maxMetadataDepth = 16

// recordTimeout bounds a write that no longer follows the caller's context.
const recordTimeout = 10 * time.Second

// Event is one API call to record.
type Event struct {
	OrgID, Category, Type, Status, UserID, UserEmail, AccountType, ObjectType,
	ObjectID, RequestID, IPAddress, UserAgent, ErrorCode string
	Metadata map[string]any
	Time     time.Time // zero: now
}

// Recorder writes audit events.
type Recorder struct {
	group   *db.Group[*ent.AuditEvent]
	client  *ent.Client
	log     *slog.Logger
	now     func() time.Time
	seqLock bool
}

// NewRecorder returns a Recorder writing through client. log may be nil.
func NewRecorder(client *ent.Client, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	r := &Recorder{client: client, log: log, now: time.Now}
	r.group = db.NewGroup(maxGroup, 1, r.insert)
	return r
}

// Record writes one row in e.OrgID and returns its event id.
//
// The write is detached from ctx's cancellation (with its own timeout):
// a call whose client hung up must still be audited. Concurrent calls share
// a commit (see maxGroup); each returns once its row is committed. Status defaults to
// FAILURE when ErrorCode is set and SUCCESS otherwise. Every string is made
// valid UTF-8 and cut to 1024 bytes; metadata is scrubbed of secrets (see
// scrubKey) before it is stored as JSON.
func (r *Recorder) Record(ctx context.Context, e Event) (string, error) {
	if e.OrgID == "" {
		return "", errors.New("auditlog: event without an organization")
	}
	if e.Category == "" || e.Type == "" {
		return "", errors.New("auditlog: event without a category or type")
	}
	// A caller recording into another organization than the one it acts
	// for is a bug that would leak its activity into a foreign audit log.
	if org, ok := tenant.Org(ctx); ok && org != e.OrgID {
		return "", fmt.Errorf("auditlog: event for org %s recorded from a context of org %s", e.OrgID, org)
	}
	if e.Status == "" {
		e.Status = StatusSuccess
		if e.ErrorCode != "" {
			e.Status = StatusFailure
		}
	}
	t := e.Time
	if t.IsZero() {
		t = r.now()
	}
	meta, err := encodeMetadata(e.Metadata)
	if err != nil {
		// Losing the details is better than losing the event.
		r.log.WarnContext(ctx, "audit metadata not encodable; recording without it",
			"event_type", e.Type, "error", err)
		meta = "{}"
	}

	id := ids.New(ids.Event)
	row := &ent.AuditEvent{
		OrgID:         e.OrgID,
		EventID:       id,
		RequestTime:   dbTime(t),
		EventCategory: clean(e.Category),
		EventType:     clean(e.Type),
		EventStatus:   clean(e.Status),
		UserID:        clean(e.UserID),
		UserEmail:     clean(e.UserEmail),
		AccountType:   clean(e.AccountType),
		ObjectType:    clean(e.ObjectType),
		ObjectID:      clean(e.ObjectID),
		RequestID:     clean(e.RequestID),
		IPAddress:     clean(e.IPAddress),
		UserAgent:     clean(e.UserAgent),
		ErrorCode:     clean(e.ErrorCode),
		Metadata:      meta,
	}
	if err := r.group.Add(row); err != nil {
		return "", fmt.Errorf("record audit event: %w", err)
	}
	return id, nil
}

// Every API call records a row, so on SQLite (one writer at a time, a
// commit per row) concurrent calls queued behind each other's commits. Rows
// recorded while a commit is in flight are written together by the next one
// (db.Group): one transaction, one multi-row INSERT. A caller returns only
// after the transaction holding its row committed, and a caller's error is
// its own row's. maxGroup bounds one statement's bind parameters (17 a row).
const maxGroup = 256

// insert writes rows in one transaction (holding the shared sequence lock on
// PostgreSQL: see StableSeq), detached from every caller's cancellation: a
// call whose client hung up must still be audited.
func (r *Recorder) insert(rows []*ent.AuditEvent) error {
	ctx, cancel := context.WithTimeout(tenant.System(context.Background()), recordTimeout)
	defer cancel()
	tx, err := r.client.Tx(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if r.seqLock {
		if _, err = tx.ExecContext(ctx, sharedSeqLockSQL, seqLockKey); err != nil {
			return fmt.Errorf("sequence lock: %w", err)
		}
	}
	creates := make([]*ent.AuditEventCreate, len(rows))
	for i, e := range rows {
		creates[i] = tx.AuditEvent.Create().
			SetOrgID(e.OrgID).
			SetEventID(e.EventID).
			SetRequestTime(e.RequestTime).
			SetEventCategory(e.EventCategory).
			SetEventType(e.EventType).
			SetEventStatus(e.EventStatus).
			SetUserID(e.UserID).
			SetUserEmail(e.UserEmail).
			SetAccountType(e.AccountType).
			SetObjectType(e.ObjectType).
			SetObjectID(e.ObjectID).
			SetRequestID(e.RequestID).
			SetIPAddress(e.IPAddress).
			SetUserAgent(e.UserAgent).
			SetErrorCode(e.ErrorCode).
			SetMetadata(e.Metadata)
	}
	if err := tx.AuditEvent.CreateBulk(creates...).Exec(ctx); err != nil {
		return err
	}
	return tx.Commit()
}

// WithDialect tells the recorder which database it writes to; on PostgreSQL
// each insert then takes the shared sequence lock (see StableSeq).
func (r *Recorder) WithDialect(d string) *Recorder {
	r.seqLock = d == dialect.Postgres
	return r
}

// clean makes s valid UTF-8 and at most MaxValueBytes long, so every stored
// value can be used as a filter value and exported as text.
func clean(s string) string {
	return truncateUTF8(strings.ToValidUTF8(s, "\uFFFD"), MaxValueBytes)
}

// encodeMetadata turns m into scrubbed JSON. It round-trips through
// encoding/json first so that structs, typed slices, json.Marshalers and so
// on are seen as the plain objects/arrays they encode to, and then scrubs
// that tree: a secret can't hide in a struct field.
func encodeMetadata(m map[string]any) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep large integers exact
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // store "<" as is; exports escape per format
	if err := enc.Encode(scrub(tree, 0)); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// scrub redacts secret-looking keys at any depth and cleans strings.
func scrub(v any, depth int) any {
	if depth >= maxMetadataDepth {
		return "[TRUNCATED]"
	}
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if scrubKey(k) {
				out[clean(k)] = Redacted
			} else {
				out[clean(k)] = scrub(x, depth+1)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = scrub(x, depth+1)
		}
		return out
	case string:
		return clean(v)
	}
	return v
}

// secretWords mark a metadata key whose value may be a credential. They are
// matched with separators removed, so "x-api-key", "apiKey" and "AccountKey"
// are caught as well as "api_key" and "account_key".
var secretWords = []string{
	"secret", "password", "token", "accountkey", "jsonkey",
	"credential", "authorization", "apikey", "privatekey",
}

// scrubKey reports whether a key's value must be redacted. Identifiers of
// secrets ("api_key_id", "apiKeyId") are not secret and are what an auditor
// needs.
func scrubKey(k string) bool {
	if isIDKey(k) {
		return false
	}
	norm := strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', '.', ' ':
			return -1
		}
		return unicode.ToLower(r)
	}, k)
	for _, w := range secretWords {
		if strings.Contains(norm, w) {
			return true
		}
	}
	return false
}

// isIDKey reports whether k names an identifier: "..._id", "...-id",
// "...Id" / "...ID" after a lower-case letter.
func isIDKey(k string) bool {
	n := len(k)
	if n < 3 {
		return false
	}
	suffix, before := k[n-2:], k[n-3]
	switch {
	case strings.EqualFold(suffix, "id") && (before == '_' || before == '-' || before == '.'):
		return true
	case (suffix == "Id" || suffix == "ID") && 'a' <= before && before <= 'z':
		return true
	}
	return false
}
