package destination

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// MaxMessageLen bounds every provider or error message this package hands
// out: they end up in API answers, the run history and e-mail.
const MaxMessageLen = 1024

// redactedMark replaces whatever was removed.
const redactedMark = "REDACTED"

// secretParams are query parameters (and form fields) that carry
// signatures, credentials or bearer capabilities: Azure SAS fields, S3 and
// GCS presigned-URL fields, OAuth 2.0 fields, GCS resumable-upload session
// ids, and generic names.
var secretParams = []string{
	// Azure SAS (account, service and user delegation SAS).
	"sig", "se", "st", "sp", "sv", "spr", "sip", "si", "sr", "srt", "ss", "sdd", "ses",
	"skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
	// AWS SigV4 / SigV2 presigned URLs.
	"x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid", "signature",
	// GCS V4 / V2 signed URLs and resumable sessions.
	"x-goog-signature", "x-goog-credential", "googleaccessid", "upload_id",
	// OAuth 2.0.
	"access_token", "refresh_token", "id_token", "client_secret", "assertion", "client_assertion",
	// Generic.
	"token", "key", "password", "passwd", "secret", "api_key", "apikey",
}

var (
	// name=value in a query string or form body, at the start or after a
	// separator, so "design=x" is left alone while "sig=abc" is not.
	paramRE = regexp.MustCompile(`(?i)(^|[?&;\s"'(,])(` + alternation(secretParams) + `)=([^&\s"'<>#;,)]*)`)
	// "name": "value" in JSON bodies that reached an error text.
	jsonRE = regexp.MustCompile(`(?i)("(?:` + alternation(append(append([]string(nil), secretParams...),
		"private_key", "private_key_id", "secret_access_key", "account_key", "sas_token", "json_key", "session_token", "credential", "authorization")) + `)"\s*:\s*)"(?:[^"\\]|\\.)*"`)
	// Authorization-like header values up to the end of the line.
	headerRE = regexp.MustCompile(`(?i)\b(authorization|proxy-authorization|x-amz-security-token|x-goog-iam-authorization-token|x-ms-copy-source-authorization|cookie|set-cookie)(\s*[:=]\s*)[^\r\n]+`)
	bearerRE = regexp.MustCompile(`(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*`)
	sigv4RE  = regexp.MustCompile(`(?i)\b(AWS4-HMAC-SHA256|AWS4-ECDSA-P256-SHA256)\s+[^\r\n]*`)
	credRE   = regexp.MustCompile(`(?i)\b(Credential|Signature|SignedHeaders)=[^,\s&]+`)
	sharedRE = regexp.MustCompile(`(?i)\b(SharedKey|SharedKeyLite|AWS)\s+([A-Za-z0-9_.\-]+):[A-Za-z0-9+/=_\-]{8,}`)
	pemRE    = regexp.MustCompile(`(?s)-----BEGIN[ A-Z0-9]*PRIVATE KEY-----.*?(?:-----END[ A-Z0-9]*PRIVATE KEY-----|$)`)
	jwtRE    = regexp.MustCompile(`\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*`)
	// scheme://user:pass@host: the userinfo only.
	userinfoRE = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#"'<>]+@`)
)

func alternation(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = regexp.QuoteMeta(n)
	}
	return strings.Join(q, "|")
}

// Redact removes signatures, tokens, keys, credentials and Authorization
// values from a URL or message: SAS and presigned-URL query parameters,
// OAuth fields, "Bearer ..." and SigV4 Authorization values, PEM private
// keys, JWTs, URL userinfo, and each of the given secret values (the
// integration's own credentials, when the caller knows them). It is the one
// place that decides what counts as credential material in text.
func Redact(s string, secrets ...string) string {
	for _, v := range secrets {
		s = redactValue(s, v)
	}
	s = pemRE.ReplaceAllString(s, "["+redactedMark+" PRIVATE KEY]")
	s = jsonRE.ReplaceAllString(s, `${1}"`+redactedMark+`"`)
	s = headerRE.ReplaceAllString(s, "${1}${2}"+redactedMark)
	s = sigv4RE.ReplaceAllString(s, "${1} "+redactedMark)
	s = sharedRE.ReplaceAllString(s, "${1} ${2}:"+redactedMark)
	s = bearerRE.ReplaceAllString(s, "${1} "+redactedMark)
	s = credRE.ReplaceAllString(s, "${1}="+redactedMark)
	s = paramRE.ReplaceAllString(s, "${1}${2}="+redactedMark)
	s = jwtRE.ReplaceAllString(s, redactedMark)
	s = userinfoRE.ReplaceAllString(s, "${1}"+redactedMark+"@")
	return s
}

// redactValue removes a known secret in its plain and URL-encoded forms.
// Very short values are skipped: replacing "1" everywhere would destroy
// the message without protecting anything.
func redactValue(s, v string) string {
	if len(v) < 6 {
		return s
	}
	for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v), strings.ReplaceAll(v, "\n", `\n`)} {
		if form != "" {
			s = strings.ReplaceAll(s, form, redactedMark)
		}
	}
	return s
}

// secretValues lists c's secrets, for Redact: the whole values and, for a
// SAS token, each parameter value (a message may hold the decoded form).
func secretValues(c Credentials) []string {
	out := []string{c.SecretAccessKey, c.AccountKey, c.JSONKey, c.SASToken}
	if q, err := url.ParseQuery(strings.TrimPrefix(c.SASToken, "?")); err == nil {
		if sig := q.Get("sig"); sig != "" {
			out = append(out, sig)
		}
	}
	if c.JSONKey != "" {
		var k struct {
			PrivateKey   string `json:"private_key"`
			PrivateKeyID string `json:"private_key_id"`
		}
		if json.Unmarshal([]byte(c.JSONKey), &k) == nil {
			out = append(out, k.PrivateKey, k.PrivateKeyID)
		}
	}
	return out
}

// bound cuts s to MaxMessageLen bytes on a rune boundary.
func bound(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// clean is Redact then bound. The input is cut first (generously) so a huge
// response dump costs little; whatever the first cut splits is beyond the
// final bound anyway.
func clean(s string, secrets ...string) string {
	if len(s) > 64<<10 {
		s = s[:64<<10]
	}
	return bound(Redact(s, secrets...), MaxMessageLen)
}

// Message describes err for a caller (a run's provider_message, a probe's
// answer): redacted and bounded. A token endpoint's refusal is described by
// its OAuth error code only, never by the body it sent, since the host may
// not be the provider's.
func Message(err error) string {
	if err == nil {
		return ""
	}
	var te *TokenError
	if errors.As(err, &te) {
		return te.Error()
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return tokenError(re).Error()
	}
	// A provider's error is told by its code and message, never by the
	// body of the answer (which any host can fill).
	if pe := providerError(nil, err); pe != nil {
		return bound(pe.Code+": "+pe.Message, MaxMessageLen)
	}
	return clean(err.Error())
}

// TokenError is an OAuth 2.0 token endpoint's refusal, without its body.
type TokenError struct {
	Status int    // HTTP status of the token endpoint's answer
	Code   string // RFC 6749 error code, if the answer had one
}

func (e *TokenError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("the OAuth token endpoint refused the service account key: HTTP %d, %s", e.Status, e.Code)
	}
	return fmt.Sprintf("the OAuth token endpoint refused the service account key: HTTP %d", e.Status)
}

// oauthCodeRE is the RFC 6749 error code syntax (NQSCHAR, kept to the usual
// lower-case identifiers so the code can carry nothing else).
var oauthCodeRE = regexp.MustCompile(`^[a-z_]{1,64}$`)

func tokenError(re *oauth2.RetrieveError) *TokenError {
	te := &TokenError{}
	if re.Response != nil {
		te.Status = re.Response.StatusCode
	}
	if oauthCodeRE.MatchString(re.ErrorCode) {
		te.Code = re.ErrorCode
	}
	return te
}

// redactedError carries a redacted text while keeping the original chain
// for errors.As (gcerrors codes, provider error types).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr wraps err so that its text is Redact-ed (with the integration's
// own secret values) and bounded.
func redactErr(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var re *redactedError
	if errors.As(err, &re) && re == err {
		return err
	}
	msg := Message(err)
	if len(secrets) > 0 {
		msg = Redact(msg, secrets...)
	}
	return &redactedError{msg: msg, err: err}
}
