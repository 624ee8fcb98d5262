// Package signing keeps each organization's Ed25519 key pairs that sign
// export manifests (clients/go/manifest). Private keys are stored
// envelope-encrypted under the master keyring, bound to their row id; the
// newest key that is not retired signs. Keys are made on first use and by
// Rotate, and never deleted: retired keys stay listed so manifests they
// signed still verify.
package signing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/signingkey"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/secrets"
)

// Keys reads, makes and rotates signing keys. Calls are scoped to the
// organization of their context (tenant).
type Keys struct {
	c    *ent.Client
	ring *secrets.Keyring
	now  func() time.Time
}

// New returns the organization signing keys over d, encrypted with ring.
func New(c *ent.Client, ring *secrets.Keyring) *Keys {
	return &Keys{c: c, ring: ring, now: time.Now}
}

// Signer is a usable private key.
type Signer struct {
	KeyID string
	Key   ed25519.PrivateKey
}

// Active returns the key that signs for the context's organization,
// making the organization's first key if it has none.
func (k *Keys) Active(ctx context.Context) (Signer, error) {
	row, err := k.current(ctx)
	if ent.IsNotFound(err) {
		row, err = k.create(ctx, k.c)
	}
	if err != nil {
		return Signer{}, err
	}
	seed, err := k.ring.Decrypt(row.PrivateKeyCiphertext, []byte(row.ID))
	if err != nil {
		return Signer{}, fmt.Errorf("decrypting signing key %s: %w", row.ID, err)
	}
	if len(seed) != ed25519.SeedSize {
		return Signer{}, fmt.Errorf("signing key %s: stored seed has %d bytes", row.ID, len(seed))
	}
	return Signer{KeyID: row.ID, Key: ed25519.NewKeyFromSeed(seed)}, nil
}

func (k *Keys) current(ctx context.Context) (*ent.SigningKey, error) {
	return k.c.SigningKey.Query().Where(signingkey.RetireTimeIsNil()).
		Order(ent.Desc(signingkey.FieldCreateTime), ent.Desc(signingkey.FieldID)).First(ctx)
}

// create makes a key pair; only its seed is stored (encrypted).
func (k *Keys) create(ctx context.Context, c *ent.Client) (*ent.SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	id := ids.New(ids.SigningKey)
	ct, err := k.ring.Encrypt(priv.Seed(), []byte(id))
	if err != nil {
		return nil, fmt.Errorf("encrypting signing key: %w", err)
	}
	return c.SigningKey.Create().SetID(id).SetPublicKey(pub).SetPrivateKeyCiphertext(ct).Save(ctx)
}

// Rotate makes a new key that signs from now on and retires the others
// (they stay listed: what they signed still verifies).
func (k *Keys) Rotate(ctx context.Context) (*ent.SigningKey, error) {
	var row *ent.SigningKey
	err := db.WithTx(ctx, k.c, func(c *ent.Client) error {
		if _, err := c.SigningKey.Update().Where(signingkey.RetireTimeIsNil()).SetRetireTime(k.now().UTC()).Save(ctx); err != nil {
			return err
		}
		var err error
		row, err = k.create(ctx, c)
		return err
	})
	return row, err
}

// List returns the organization's keys, newest first, making its first
// key if it has none (so an auditor can be given the key before the first
// export).
func (k *Keys) List(ctx context.Context) ([]*ent.SigningKey, error) {
	if _, err := k.current(ctx); ent.IsNotFound(err) {
		if _, err := k.create(ctx, k.c); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return k.c.SigningKey.Query().Order(ent.Desc(signingkey.FieldCreateTime), ent.Desc(signingkey.FieldID)).All(ctx)
}

// Fingerprint is a short, stable name of a public key: sha256 of its
// bytes, hex, as an auditor compares keys received out of band.
func Fingerprint(pub []byte) string {
	s := sha256.Sum256(pub)
	return "SHA256:" + hex.EncodeToString(s[:])
}
