package export

import (
	"context"

	"gocloud.dev/blob"

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
		ObjectLock: destination.ObjectLock{Mode: row.ObjectLockMode, Days: row.ObjectLockDays},
	}, nil
}

// openBucket opens the bucket of a stored integration the way every run
// (and orphan clean-up) does: credentials unsealed, the operator's
// private-endpoint rule and LOCAL root applied. A credential failure is a
// *RunError (CREDENTIALS_UNDECRYPTABLE); the caller closes the bucket.
func (r *Runner) openBucket(ctx context.Context, row *ent.StorageIntegration) (*blob.Bucket, destination.Location, error) {
	in, err := IntegrationOf(r.keys, row)
	if err != nil {
		return nil, destination.Location{}, &RunError{Code: destination.CredentialsCode,
			Message: err.Error() + "; restore the server's master key file or enter the integration's credentials again"}
	}
	return destination.Open(ctx, in, r.openOptions())
}

// openOptions are the operator's settings for reaching storage.
func (r *Runner) openOptions() destination.OpenOptions {
	return destination.OpenOptions{AllowPrivateEndpoints: r.cfg.AllowPrivateEndpoints, Local: r.cfg.Local,
		StallTimeout: r.cfg.StallTimeout, GCSChunkRetryDeadline: r.cfg.GCSChunkRetryDeadline,
		UploadConcurrency: r.cfg.UploadConcurrency}
}
