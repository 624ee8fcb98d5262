package destination

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/auditexport/auditexport/internal/secrets"
)

// Credentials is the decrypted form of an integration's stored credentials.
// It is serialised to JSON, envelope-encrypted (internal/secrets) and only
// ever held in memory in clear. Never log it: String() redacts.
type Credentials struct {
	Kind            string `json:"kind"` // aws_access_key, aws_role, gcs_service_account, azure_shared_key, azure_sas
	AccessKeyID     string `json:"access_key_id,omitempty"`
	SecretAccessKey string `json:"secret_access_key,omitempty"`
	RoleARN         string `json:"role_arn,omitempty"`
	JSONKey         string `json:"json_key,omitempty"`
	AccountName     string `json:"account_name,omitempty"`
	AccountKey      string `json:"account_key,omitempty"`
	SASToken        string `json:"sas_token,omitempty"`
}

// String never prints secrets, in case a Credentials reaches a log line.
func (c Credentials) String() string { return "Credentials{kind=" + c.Kind + ", <redacted>}" }

// GoString redacts for %#v as well.
func (c Credentials) GoString() string { return c.String() }

// LogValue redacts for log/slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// DecryptCredentials opens an integration's stored credentials (bound to its
// id); no ciphertext means none (LOCAL).
func DecryptCredentials(keys *secrets.Keyring, ciphertext []byte, integrationID string) (Credentials, error) {
	var c Credentials
	if len(ciphertext) == 0 {
		return c, nil
	}
	plain, err := keys.Decrypt(ciphertext, []byte(integrationID))
	if err != nil {
		// secrets' errors name the key id at most, never key material.
		return c, fmt.Errorf("%w: %v", ErrCredentialsUndecryptable, err)
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, fmt.Errorf("%w: they are not valid JSON", ErrCredentialsUndecryptable)
	}
	return c, nil
}

// ErrCredentialsUndecryptable matches (errors.Is) every failure to open an
// integration's stored credentials: the master key file lacks their key id,
// holds other key bytes under it, or the row was tampered with. It is an
// operator's problem (restore master.key) or the admin's (re-enter the
// credentials), never a provider's.
var ErrCredentialsUndecryptable = errors.New("the integration's stored credentials cannot be decrypted with this server's master key")

// CredentialsCode is the run error code and ErrorInfo reason for
// ErrCredentialsUndecryptable.
const CredentialsCode = "CREDENTIALS_UNDECRYPTABLE"
