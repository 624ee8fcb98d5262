package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/auditexport/auditexport/ent/signingkey"
	"github.com/auditexport/auditexport/ent/storageintegration"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/secrets"
	"github.com/auditexport/auditexport/internal/tenant"
)

// KeyUsage counts the stored credentials encrypted under each master key id.
func KeyUsage(ctx context.Context, d *db.DB) (map[string]int, error) {
	rows, err := d.Client.StorageIntegration.Query().
		Where(storageintegration.CredentialsCiphertextNotNil()).
		Select(storageintegration.FieldCredentialsCiphertext).All(tenant.System(ctx))
	if err != nil {
		return nil, err
	}
	usage := map[string]int{}
	for _, r := range rows {
		if len(r.CredentialsCiphertext) == 0 {
			continue
		}
		kid, err := secrets.KeyID(r.CredentialsCiphertext)
		if err != nil {
			kid = "(corrupt)"
		}
		usage[kid]++
	}
	// Manifest signing keys are encrypted under the same master keys.
	sks, err := d.Client.SigningKey.Query().Select(signingkey.FieldPrivateKeyCiphertext).All(tenant.System(ctx))
	if err != nil {
		return nil, err
	}
	for _, k := range sks {
		kid, err := secrets.KeyID(k.PrivateKeyCiphertext)
		if err != nil {
			kid = "(corrupt)"
		}
		usage[kid]++
	}
	return usage, nil
}

// RotateResult says what ReencryptCredentials did.
type RotateResult struct {
	KeyID       string   // the active key everything is now encrypted under
	Total       int      // stored credentials looked at
	Reencrypted int      // rows rewritten under KeyID
	Failed      []string // integration ids that could not be re-encrypted (unknown key id, tampered)
}

// ReencryptCredentials rewrites every stored credential that is not yet
// encrypted under keys' active key. Each row is updated only if its
// ciphertext is still the one read, so a credential changed meanwhile by a
// running server is left alone (it is already under that server's active
// key, or the next rotation picks it up). update_time is kept: rotation is
// not a change a user made.
func ReencryptCredentials(ctx context.Context, d *db.DB, keys *secrets.Keyring) (RotateResult, error) {
	sctx := tenant.System(ctx)
	res := RotateResult{KeyID: keys.ActiveKeyID()}
	rows, err := d.Client.StorageIntegration.Query().
		Where(storageintegration.CredentialsCiphertextNotNil()).
		Select(storageintegration.FieldID, storageintegration.FieldCredentialsCiphertext, storageintegration.FieldUpdateTime).
		All(sctx)
	if err != nil {
		return res, err
	}
	for _, r := range rows {
		if len(r.CredentialsCiphertext) == 0 {
			continue
		}
		res.Total++
		fresh, err := rewrap(keys, &res, r.CredentialsCiphertext, r.ID)
		if err != nil {
			return res, err
		}
		if fresh == nil {
			continue
		}
		n, err := d.Client.StorageIntegration.Update().
			Where(storageintegration.ID(r.ID), storageintegration.CredentialsCiphertextEQ(r.CredentialsCiphertext)).
			SetCredentialsCiphertext(fresh).SetUpdateTime(r.UpdateTime).
			Save(sctx)
		if err != nil {
			return res, fmt.Errorf("re-encrypt integration %s: %w", r.ID, err)
		}
		res.Reencrypted += n
	}
	if err := reencryptSigningKeys(sctx, d, keys, &res); err != nil {
		return res, err
	}
	sort.Strings(res.Failed)
	return res, nil
}

// rewrap returns blob (sealed to row id) encrypted under keys' active key,
// or nil when it already is or cannot be opened (then the id is listed in
// res.Failed).
func rewrap(keys *secrets.Keyring, res *RotateResult, blob []byte, id string) ([]byte, error) {
	if kid, err := secrets.KeyID(blob); err == nil && kid == res.KeyID {
		return nil, nil
	}
	plain, err := keys.Decrypt(blob, []byte(id))
	if err != nil {
		res.Failed = append(res.Failed, id)
		return nil, nil
	}
	defer clear(plain)
	return keys.Encrypt(plain, []byte(id))
}

// reencryptSigningKeys does for the organizations' manifest signing keys
// what ReencryptCredentials does for integration credentials.
func reencryptSigningKeys(sctx context.Context, d *db.DB, keys *secrets.Keyring, res *RotateResult) error {
	rows, err := d.Client.SigningKey.Query().
		Select(signingkey.FieldID, signingkey.FieldPrivateKeyCiphertext, signingkey.FieldUpdateTime).All(sctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		res.Total++
		fresh, err := rewrap(keys, res, r.PrivateKeyCiphertext, r.ID)
		if err != nil {
			return err
		}
		if fresh == nil {
			continue
		}
		n, err := d.Client.SigningKey.Update().
			Where(signingkey.ID(r.ID), signingkey.PrivateKeyCiphertextEQ(r.PrivateKeyCiphertext)).
			SetPrivateKeyCiphertext(fresh).SetUpdateTime(r.UpdateTime).Save(sctx)
		if err != nil {
			return fmt.Errorf("re-encrypt signing key %s: %w", r.ID, err)
		}
		res.Reencrypted += n
	}
	return nil
}

// OpenKeyring loads the master key file for a database. A key is generated
// only while no stored credential is encrypted: a data dir restored without
// its master.key must not start on a fresh key and fail every export later.
// It also refuses a key file that lacks a key id the stored credentials use.
func OpenKeyring(ctx context.Context, d *db.DB, path string) (*secrets.Keyring, error) {
	usage, err := KeyUsage(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("counting stored credentials: %w", err)
	}
	keys, err := secrets.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		if n := sumUsage(usage); n > 0 {
			return nil, fmt.Errorf("--master-key-file %s does not exist, but %d stored secrets (integration credentials and manifest signing keys) are encrypted under master key id(s) %s: "+
				"restore the master.key that belongs to this database (see README, Backup and restore); refusing to generate a new key that could not decrypt them",
				path, n, strings.Join(sortedKeys(usage), ", "))
		}
		keys, err = secrets.LoadOrCreate(path)
	}
	if err != nil {
		return nil, fmt.Errorf("--master-key-file: %w", err)
	}
	known := map[string]bool{}
	for _, kid := range keys.KeyIDs() {
		known[kid] = true
	}
	var missing []string
	for _, kid := range sortedKeys(usage) {
		if !known[kid] {
			missing = append(missing, fmt.Sprintf("%s (%d credentials)", kid, usage[kid]))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("--master-key-file %s lacks master key id(s) %s used by stored credentials: restore the key file that has them "+
			"(a rotated-out line may still be needed; see 'auditexport keys status')", path, strings.Join(missing, ", "))
	}
	return keys, nil
}

func sumUsage(u map[string]int) int {
	n := 0
	for _, c := range u {
		n += c
	}
	return n
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
