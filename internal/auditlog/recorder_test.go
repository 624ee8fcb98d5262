package auditlog

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/auditexport/auditexport/ent/auditevent"
	"github.com/auditexport/auditexport/internal/db"
	idpkg "github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/tenant"
)

func TestScrubKey(t *testing.T) {
	for k, want := range map[string]bool{
		"password": true, "new_password": true, "clientSecret": true, "session_token": true,
		"AccountKey": true, "account_key": true, "gcs_json_key": true, "credentials": true,
		"Authorization": true, "api_key": true, "x-api-key": true, "API_KEY": true, "apiKey": true,
		"private_key": true, "api_key_id": false, "apiKeyId": false, "API_KEY_ID": false,
		"token_id": false, "secret_id": false, "name": false, "paid": false, "tokenid": true,
		"author": false, "rows": false, "tokens": true, "key": false, "id": false,
	} {
		if got := scrubKey(k); got != want {
			t.Errorf("scrubKey(%q) = %v, want %v", k, got, want)
		}
	}
}

func TestRecordScrubsAndCleans(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *db.DB) {
		r := NewRecorder(d.Client, nil)
		type creds struct {
			User     string `json:"user"`
			Password string `json:"password"`
		}
		long := strings.Repeat("é", 600) // 1200 bytes
		at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
		id, err := r.Record(context.Background(), Event{
			OrgID: "org_a", Category: "INTEGRATIONS", Type: "CREATE_STORAGE_INTEGRATION",
			ErrorCode: "INVALID_ARGUMENT", UserAgent: long, UserEmail: "bad\xffutf8@example.com", Time: at,
			Metadata: map[string]any{
				"api_key_id": "key_123",
				"api_key":    "ae_live_xxx",
				"name":       "prod <bucket>",
				"nested": map[string]any{
					"client_secret": "s3cr3t",
					"list":          []any{map[string]any{"Authorization": "Bearer abc"}, "plain"},
					"gcs_json_key":  map[string]any{"private_key": "-----BEGIN"},
					"ok":            long,
				},
				"login": creds{User: "ada", Password: "hunter2"},
				"rows":  12345678901234567,
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !idpkg.Valid(idpkg.Event, id) {
			t.Errorf("event id %q", id)
		}
		ctx := tenant.WithOrg(context.Background(), "org_a")
		e, err := d.Client.AuditEvent.Query().Where(auditevent.EventID(id)).Only(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.EventStatus != StatusFailure {
			t.Errorf("status %q", e.EventStatus)
		}
		if !e.RequestTime.Equal(at.Truncate(time.Microsecond)) {
			t.Errorf("request time %v", e.RequestTime)
		}
		if len(e.UserAgent) > MaxValueBytes || !utf8.ValidString(e.UserAgent) || !strings.HasPrefix(e.UserAgent, "éé") {
			t.Errorf("user agent: %d bytes, valid %v", len(e.UserAgent), utf8.ValidString(e.UserAgent))
		}
		if e.UserEmail != "bad\uFFFDutf8@example.com" {
			t.Errorf("user email %q", e.UserEmail)
		}
		for _, secret := range []string{"ae_live_xxx", "s3cr3t", "Bearer", "BEGIN", "hunter2"} {
			if strings.Contains(e.Metadata, secret) {
				t.Errorf("metadata leaks %q: %s", secret, e.Metadata)
			}
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(e.Metadata))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		nested := m["nested"].(map[string]any)
		list := nested["list"].([]any)
		checks := map[string]any{
			"api_key_id":            m["api_key_id"],
			"api_key":               m["api_key"],
			"name":                  m["name"],
			"nested.client_secret":  nested["client_secret"],
			"nested.gcs_json_key":   nested["gcs_json_key"],
			"nested.list[0].Auth":   list[0].(map[string]any)["Authorization"],
			"nested.list[1]":        list[1],
			"login.password":        m["login"].(map[string]any)["password"],
			"login.user":            m["login"].(map[string]any)["user"],
			"rows (exact integer)":  m["rows"].(json.Number).String(),
			"nested.ok (truncated)": len(nested["ok"].(string)),
		}
		want := map[string]any{
			"api_key_id": "key_123", "api_key": Redacted, "name": "prod <bucket>",
			"nested.client_secret": Redacted, "nested.gcs_json_key": Redacted, "nested.list[0].Auth": Redacted,
			"nested.list[1]": "plain", "login.password": Redacted, "login.user": "ada",
			"rows (exact integer)": "12345678901234567", "nested.ok (truncated)": 1024,
		}
		for k, w := range want {
			if checks[k] != w {
				t.Errorf("%s = %v, want %v", k, checks[k], w)
			}
		}
	})
}

func TestRecordDefaultsAndGuards(t *testing.T) {
	d := openSQLite(t)
	r := NewRecorder(d.Client, slog.New(slog.DiscardHandler))
	fixed := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	r.now = func() time.Time { return fixed }

	// Canceled caller: the event is still written.
	ctx, cancel := context.WithCancel(tenant.WithOrg(context.Background(), "org_a"))
	cancel()
	id, err := r.Record(ctx, Event{OrgID: "org_a", Category: "ACCESS", Type: "API_KEY_AUTH"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := d.Client.AuditEvent.Query().Where(auditevent.EventID(id)).Only(orgA())
	if err != nil {
		t.Fatal(err)
	}
	if e.EventStatus != StatusSuccess || e.Metadata != "{}" || !e.RequestTime.Equal(fixed) || e.OrgID != "org_a" {
		t.Errorf("event = %+v", e)
	}

	bad := []struct {
		ctx context.Context
		e   Event
	}{
		{context.Background(), Event{Category: "ACCESS", Type: "API_KEY_AUTH"}},
		{context.Background(), Event{OrgID: "org_a", Type: "API_KEY_AUTH"}},
		{tenant.WithOrg(context.Background(), "org_b"), Event{OrgID: "org_a", Category: "ACCESS", Type: "X"}},
	}
	for i, b := range bad {
		if _, err := r.Record(b.ctx, b.e); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}

	// Unencodable metadata loses the details, not the event.
	if _, err := r.Record(context.Background(), Event{OrgID: "org_a", Category: "ACCESS", Type: "X",
		Metadata: map[string]any{"f": func() {}}}); err != nil {
		t.Errorf("unencodable metadata: %v", err)
	}
}
