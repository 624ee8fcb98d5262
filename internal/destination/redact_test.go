package destination

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const testPEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"

func TestRedact(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		secrets []string
		gone    []string // must not appear in the output
		kept    []string // must still appear
	}{
		{"azure SAS url in a dial error",
			`Put "https://acct.blob.core.windows.net/c/x.csv?comp=block&blockid=QUFB&sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2030-01-01T00:00:00Z&st=2020-01-01&spr=https&sig=AbC%2Bdef%3D": dial tcp 127.0.0.1:1: connect: connection refused`,
			nil, []string{"AbC%2Bdef%3D", "sig=AbC", "2030-01-01", "rwdlac"},
			[]string{"comp=block", "blockid=QUFB", "connection refused", "acct.blob.core.windows.net/c/x.csv", "sig=REDACTED"}},
		{"user delegation SAS", `GET https://a.blob.core.windows.net/c?skoid=0000-1111&sktid=tenant-x&skt=2020&ske=2030&sks=b&skv=2022&sig=zzz123`,
			nil, []string{"0000-1111", "tenant-x", "zzz123"}, []string{"skoid=REDACTED"}},
		{"SAS at the start", `sv=2022-11-02&sig=secretsig`, nil, []string{"secretsig", "2022-11-02"}, nil},
		{"S3 presigned", `https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=FwoGZXIvYXdzEJr&X-Amz-Signature=0123abcd`,
			nil, []string{"AKIAEXAMPLE", "FwoGZXIvYXdzEJr", "0123abcd"}, []string{"X-Amz-Expires=900", "b.s3.amazonaws.com/k"}},
		{"GCS signed and resumable", `https://storage.googleapis.com/b/o?X-Goog-Signature=deadbeef&X-Goog-Credential=sa%40p.iam&upload_id=ADPycdsession`,
			nil, []string{"deadbeef", "sa%40p.iam", "ADPycdsession"}, []string{"storage.googleapis.com/b/o"}},
		{"oauth form and json", `grant_type=urn%3Aietf&assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln {"access_token":"ya29.a0Af","refresh_token":"1//0g","token_type":"Bearer","client_secret":"shh"}`,
			nil, []string{"eyJhbGciOiJSUzI1NiJ9", "ya29.a0Af", "1//0g", "shh"}, []string{"grant_type=urn%3Aietf", `"token_type":"Bearer"`}},
		{"authorization headers", "Authorization: Bearer ya29.tok-en_x\r\nX-Amz-Security-Token: FQoDYXdz\r\nHost: x",
			nil, []string{"ya29.tok-en_x", "FQoDYXdz"}, []string{"Host: x", "Authorization: REDACTED"}},
		{"bearer in text", `request had invalid authentication credentials: Bearer ya29.c.b0AXv0zT`,
			nil, []string{"ya29.c.b0AXv0zT"}, []string{"invalid authentication credentials"}},
		{"sigv4 value", `AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range, Signature=fe5f80f77d5fa3beca038a248ff027`,
			nil, []string{"AKIAIOSFODNN7EXAMPLE", "fe5f80f77d5fa3beca038a248ff027"}, nil},
		{"sigv4 fields alone", `the string Credential=AKIAXYZ/2013/x, Signature=abcdef0123 did not match`,
			nil, []string{"AKIAXYZ", "abcdef0123"}, []string{"did not match"}},
		{"azure shared key header", `SharedKey devstoreaccount1:Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq=`,
			nil, []string{"Eby8vdM02xNOcqFlq"}, []string{"devstoreaccount1"}},
		{"pem private key", "bad key: " + testPEM + " end", nil, []string{"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"}, []string{"bad key:", " end", "PRIVATE KEY]"}},
		{"pem in json", `{"private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n","client_email":"a@b"}`,
			nil, []string{"MIIEvQIBADANBg"}, []string{`"client_email":"a@b"`}},
		{"truncated pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA", nil, []string{"MIIEowIBAAKCAQEA"}, nil},
		{"url userinfo", `Get "https://admin:hunter2@minio.example.com/b": EOF`, nil, []string{"hunter2", "admin:"}, []string{"minio.example.com/b", "EOF"}},
		{"known secret values", `signature mismatch for key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY`,
			[]string{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}, []string{"wJalrXUtnFEMI", "EXAMPLEKEY"}, []string{"signature mismatch for key REDACTED"}},
		{"short secret is not a pattern", `code 1 at 12:00`, []string{"1"}, nil, []string{"code 1 at 12:00"}},
		{"ordinary messages untouched", `blob (key "exports/design=x/a.csv") (code=NotFound): The specified container does not exist. RequestId:abc`,
			nil, nil, []string{`blob (key "exports/design=x/a.csv") (code=NotFound): The specified container does not exist. RequestId:abc`}},
		{"provider error text untouched", `SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided. Check your key and signing method.`,
			nil, nil, []string{"The request signature we calculated does not match the signature you provided. Check your key and signing method."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.in, tc.secrets...)
			for _, g := range tc.gone {
				if strings.Contains(got, g) {
					t.Errorf("Redact kept %q:\n in: %s\nout: %s", g, tc.in, got)
				}
			}
			for _, k := range tc.kept {
				if !strings.Contains(got, k) {
					t.Errorf("Redact lost %q:\n in: %s\nout: %s", k, tc.in, got)
				}
			}
			if again := Redact(got, tc.secrets...); again != got {
				t.Errorf("Redact is not idempotent: %q -> %q", got, again)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		m := Message(errors.New(strings.Repeat("é", 5000)))
		if len(m) > MaxMessageLen || !strings.HasSuffix(m, "…") || !strings.HasPrefix(m, "é") {
			t.Fatalf("len %d: %q...", len(m), m[:20])
		}
	})
	t.Run("token endpoint body is never quoted", func(t *testing.T) {
		body := `<html>internal admin page: root password is s3cr3t</html>`
		re := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 404, Status: "404 Not Found"}, Body: []byte(body)}
		wrapped := &url.Error{Op: "Post", URL: "https://example.com/token", Err: fmt.Errorf("oauth2: cannot fetch token: %w", re)}
		for _, err := range []error{re, wrapped, redactErr(wrapped)} {
			m := Message(err)
			if strings.Contains(m, "s3cr3t") || strings.Contains(m, "admin page") || !strings.Contains(m, "HTTP 404") {
				t.Errorf("Message(%T) = %q", err, m)
			}
		}
		re.ErrorCode, re.ErrorDescription = "invalid_grant", "s3cr3t description"
		if m := Message(re); !strings.Contains(m, "invalid_grant") || strings.Contains(m, "s3cr3t") {
			t.Errorf("Message = %q", m)
		}
		re.ErrorCode = "<b>s3cr3t</b>"
		if m := Message(re); strings.Contains(m, "s3cr3t") {
			t.Errorf("Message = %q", m)
		}
	})
	t.Run("redacted error keeps its chain", func(t *testing.T) {
		inner := &url.Error{Op: "Put", URL: "https://a.blob.core.windows.net/c/b?sig=SIGSIG", Err: errors.New("connection refused")}
		err := redactErr(inner, "myAccountKeyValue")
		var ue *url.Error
		if !errors.As(err, &ue) || strings.Contains(err.Error(), "SIGSIG") || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("credential values", func(t *testing.T) {
		c := Credentials{Kind: "azure_sas", SASToken: "?sv=2022&sig=abc%2Bdef%2Fgh%3D"}
		vals := secretValues(c)
		if got := Redact("decoded abc+def/gh= here", vals...); strings.Contains(got, "abc+def/gh=") {
			t.Errorf("decoded sig kept: %s", got)
		}
		c = Credentials{Kind: "gcs_service_account", JSONKey: `{"private_key_id":"0123456789abcdef","private_key":"` + strings.ReplaceAll(testPEM, "\n", `\n`) + `"}`}
		if got := Redact("key 0123456789abcdef refused", secretValues(c)...); strings.Contains(got, "0123456789abcdef") {
			t.Errorf("private_key_id kept: %s", got)
		}
	})
}
