package export

import (
	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/secrets"
)

// IntegrationOf is what destination needs to reach a stored integration's
// storage, its credentials decrypted. The error (credentials that do not
// open with keys) is destination.DecryptCredentials's, for callers to
// report as destination.CredentialsCode.
func IntegrationOf(keys *secrets.Keyring, row *ent.StorageIntegration) (destination.Integration, error) {
	creds, err := destination.DecryptCredentials(keys, row.CredentialsCiphertext, row.ID)
	if err != nil {
		return destination.Integration{}, err
	}
	return destination.Integration{
		Provider: destination.Provider(row.Provider), Destination: row.Destination, Region: row.Region,
		Endpoint: row.Endpoint, ExternalID: row.ExternalID, Creds: creds, OrgID: row.OrgID,
	}, nil
}
