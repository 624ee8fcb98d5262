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
	return &Recorder{client: client, log: log, now: time.Now}
}

// Record writes one row in e.OrgID and returns its event id.
//
// The write is detached from ctx's cancellation (with its own timeout):
// a call whose client hung up must still be audited. Status defaults to
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

	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	wctx = tenant.WithOrg(wctx, e.OrgID)
	id := ids.New(ids.Event)
	client := r.client
	var tx *ent.Tx
	if r.seqLock {
		// See StableSeq: inserts hold the sequence lock shared.
		if tx, err = r.client.Tx(wctx); err != nil {
			return "", fmt.Errorf("record audit event: %w", err)
		}
		defer func() { _ = tx.Rollback() }()
		if _, err = tx.ExecContext(wctx, sharedSeqLockSQL, seqLockKey); err != nil {
			return "", fmt.Errorf("record audit event: sequence lock: %w", err)
		}
		client = tx.Client()
	}
	err = client.AuditEvent.Create().
		SetEventID(id).
		SetRequestTime(dbTime(t)).
		SetEventCategory(clean(e.Category)).
		SetEventType(clean(e.Type)).
		SetEventStatus(clean(e.Status)).
		SetUserID(clean(e.UserID)).
		SetUserEmail(clean(e.UserEmail)).
		SetAccountType(clean(e.AccountType)).
		SetObjectType(clean(e.ObjectType)).
		SetObjectID(clean(e.ObjectID)).
		SetRequestID(clean(e.RequestID)).
		SetIPAddress(clean(e.IPAddress)).
		SetUserAgent(clean(e.UserAgent)).
		SetErrorCode(clean(e.ErrorCode)).
		SetMetadata(meta).
		Exec(wctx)
	if err == nil && tx != nil {
		err = tx.Commit()
	}
	if err != nil {
		return "", fmt.Errorf("record audit event: %w", err)
	}
	return id, nil
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
