// Package notify sends e-mail notifications over SMTP.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/auditexport/auditexport/internal/destination"
)

// Mailer sends notifications. A Mailer without an SMTP URL is disabled:
// Send does nothing and says so at debug level (the server logs once at
// start that mail is disabled).
type Mailer struct {
	host     string
	port     int
	ssl      bool
	user     string
	password string
	from     string
	log      *slog.Logger
}

// New parses smtpURL (smtp://[user:pass@]host:port or smtps://...). An empty
// URL gives a disabled Mailer.
func New(smtpURL, from string, log *slog.Logger) (*Mailer, error) {
	m := &Mailer{from: from, log: log}
	if smtpURL == "" {
		return m, nil
	}
	u, err := url.Parse(smtpURL)
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
		return nil, errors.New("--smtp-url: want smtp://host:port or smtps://host:port")
	}
	m.host, m.ssl = u.Hostname(), u.Scheme == "smtps"
	m.port = 25
	if m.ssl {
		m.port = 465
	}
	if p := u.Port(); p != "" {
		if m.port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("--smtp-url: bad port %q", p)
		}
	}
	if u.User != nil {
		m.user = u.User.Username()
		m.password, _ = u.User.Password()
	}
	return m, nil
}

// Enabled reports whether mail is configured.
func (m *Mailer) Enabled() bool { return m != nil && m.host != "" }

// Message is one notification.
type Message struct {
	To      []string
	Subject string
	Body    string
}

// Send delivers msg, or does nothing when mail is disabled.
func (m *Mailer) Send(ctx context.Context, msg Message) error { return m.send(ctx, msg, "") }

// send delivers msg with the Message-ID messageID ("" for a fresh one).
func (m *Mailer) send(ctx context.Context, msg Message, messageID string) error {
	if !m.Enabled() {
		m.log.DebugContext(ctx, "mail disabled; notification not sent", "subject", msg.Subject)
		return nil
	}
	if len(msg.To) == 0 {
		return nil
	}
	e := mail.NewMsg()
	if err := e.From(m.from); err != nil {
		return fmt.Errorf("mail from %q: %w", m.from, err)
	}
	if err := e.To(msg.To...); err != nil {
		return fmt.Errorf("mail to: %w", err)
	}
	// Bodies quote provider errors; whoever built them, no credential
	// material leaves in a mail.
	e.Subject(destination.Redact(msg.Subject))
	e.SetDate()
	if messageID != "" {
		e.SetMessageIDWithValue(messageID)
	} else {
		e.SetMessageID()
	}
	e.SetBodyString(mail.TypeTextPlain, destination.Redact(msg.Body))
	opts := []mail.Option{mail.WithPort(m.port), mail.WithTimeout(20 * time.Second)}
	if m.ssl {
		opts = append(opts, mail.WithSSL())
	} else {
		// Plain SMTP unless the server offers STARTTLS.
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	}
	if m.user != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(m.user), mail.WithPassword(m.password))
	}
	c, err := mail.NewClient(m.host, opts...)
	if err != nil {
		return fmt.Errorf("mail client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, e); err != nil {
		return fmt.Errorf("send mail to %v: %w", msg.To, err)
	}
	return nil
}
