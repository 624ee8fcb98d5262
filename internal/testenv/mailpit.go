package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Mailpit is an SMTP server (any AUTH accepted, no TLS) with an HTTP API to
// read the mail back.
type Mailpit struct {
	SMTPURL  string // smtp://127.0.0.1:<port>
	SMTPAddr string // 127.0.0.1:<port>, for net/smtp
	APIURL   string // http://127.0.0.1:<port>
}

// Message is one received mail.
type Message struct {
	ID          string
	MessageID   string   // the Message-ID header, without angle brackets
	From        string   // address only
	To          []string // addresses only
	Cc          []string
	Subject     string
	Text        string // text/plain body
	HTML        string // text/html body
	Attachments []Attachment
}

// Attachment describes one attachment; fetch its bytes with
// Mailpit.AttachmentData.
type Attachment struct {
	PartID      string
	FileName    string
	ContentType string
	Size        int
}

// StartMailpit starts mailpit and stops it when the test ends.
func StartMailpit(t testing.TB) *Mailpit {
	t.Helper()
	bin := Require(t, ToolMailpit)
	dir := t.TempDir()
	args := func(ports []int) []string {
		return []string{
			"--smtp", hostPort(ports[0]),
			"--listen", hostPort(ports[1]),
			"--smtp-auth-accept-any",
			"--smtp-auth-allow-insecure",
			"--database", filepath.Join(dir, "mailpit.db"),
			"--disable-version-check",
			"--quiet",
		}
	}
	_, ports := launch(t, server{
		name: "mailpit", bin: bin, nports: 2, args: args,
		ready: func(ports []int) func(context.Context) error {
			return httpOK(fmt.Sprintf("http://%s/api/v1/info", hostPort(ports[1])))
		},
	})
	return &Mailpit{
		SMTPURL:  "smtp://" + hostPort(ports[0]),
		SMTPAddr: hostPort(ports[0]),
		APIURL:   "http://" + hostPort(ports[1]),
	}
}

type apiAddress struct {
	Name    string
	Address string
}

func addresses(as []apiAddress) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Address)
	}
	return out
}

func (m *Mailpit) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		t.Fatalf("testenv: mailpit GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: mailpit GET %s: %s %v: %s", path, resp.Status, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("testenv: mailpit GET %s: %v: %s", path, err, body)
	}
}

// Messages returns all received messages, newest first, with full bodies.
func (m *Mailpit) Messages(t testing.TB) []Message {
	t.Helper()
	var list struct {
		Messages []struct{ ID string }
	}
	m.getJSON(t, "/api/v1/messages?limit=1000", &list)
	out := make([]Message, 0, len(list.Messages))
	for _, s := range list.Messages {
		out = append(out, m.Message(t, s.ID))
	}
	return out
}

// Message fetches one message by ID.
func (m *Mailpit) Message(t testing.TB, id string) Message {
	t.Helper()
	var full struct {
		ID          string
		MessageID   string
		From        apiAddress
		To, Cc      []apiAddress
		Subject     string
		Text, HTML  string
		Attachments []Attachment
	}
	m.getJSON(t, "/api/v1/message/"+url.PathEscape(id), &full)
	return Message{
		ID: full.ID, MessageID: full.MessageID, From: full.From.Address, To: addresses(full.To), Cc: addresses(full.Cc),
		Subject: full.Subject, Text: full.Text, HTML: full.HTML, Attachments: full.Attachments,
	}
}

// AttachmentData returns the bytes of one attachment.
func (m *Mailpit) AttachmentData(t testing.TB, msgID, partID string) []byte {
	t.Helper()
	resp, err := HTTP.Get(m.APIURL + "/api/v1/message/" + url.PathEscape(msgID) + "/part/" + url.PathEscape(partID))
	if err != nil {
		t.Fatalf("testenv: mailpit attachment: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: mailpit attachment %s/%s: %s %v", msgID, partID, resp.Status, err)
	}
	return b
}

// WaitFor polls until a received message satisfies pred and returns it; it
// fails the test after timeout, listing what did arrive.
func (m *Mailpit) WaitFor(t testing.TB, pred func(Message) bool, timeout time.Duration) Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := m.Messages(t)
		for _, msg := range msgs {
			if pred(msg) {
				return msg
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, msg := range msgs {
				got = append(got, fmt.Sprintf("%q to %v", msg.Subject, msg.To))
			}
			t.Fatalf("testenv: no matching mail within %s; received %d: %s", timeout, len(msgs), strings.Join(got, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
