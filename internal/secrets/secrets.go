// Package secrets provides envelope encryption for stored cloud credentials.
//
// Each blob carries its own random data key (DEK), wrapped by a master key
// (KEK) from a Keyring. The KEK's id travels with the blob so master keys can
// be rotated without re-encrypting everything at once.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const (
	blobVersion = 1
	keySize     = 32
	maxKIDLen   = 32
	nonceSize   = 12 // GCM standard nonce
	tagSize     = 16
	wrappedSize = nonceSize + keySize + tagSize
)

// Keyring holds master keys (KEKs). The first key is the active one used to
// encrypt; all keys decrypt.
type Keyring struct {
	active string
	// Only the AEADs are kept so the raw key bytes cannot leak through
	// accidental formatting of a Keyring.
	keks map[string]cipher.AEAD
}

// ParseKeyring reads the key file format: one key per line,
// "<kid> <base64 std-encoded 32-byte key>"; blank lines and lines starting
// with # are ignored. The first key is active.
func ParseKeyring(data []byte) (*Keyring, error) {
	k := &Keyring{keks: map[string]cipher.AEAD{}}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("secrets: keyring line %d: want \"<kid> <base64 key>\"", n)
		}
		kid := f[0]
		if !validKID(kid) {
			return nil, fmt.Errorf("secrets: keyring line %d: invalid key id %q (1-%d chars of [A-Za-z0-9_-])", n, kid, maxKIDLen)
		}
		if _, dup := k.keks[kid]; dup {
			return nil, fmt.Errorf("secrets: keyring line %d: duplicate key id %q", n, kid)
		}
		key, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			// The decode error can echo key bytes, so it is not wrapped.
			return nil, fmt.Errorf("secrets: keyring line %d: key is not valid std base64", n)
		}
		if len(key) != keySize {
			return nil, fmt.Errorf("secrets: keyring line %d: key is %d bytes, want %d", n, len(key), keySize)
		}
		aead, err := newGCM(key)
		if err != nil {
			return nil, fmt.Errorf("secrets: keyring line %d: %w", n, err)
		}
		k.keks[kid] = aead
		if k.active == "" {
			k.active = kid
		}
	}
	if k.active == "" {
		return nil, errors.New("secrets: keyring contains no keys")
	}
	return k, nil
}

func validKID(s string) bool {
	if len(s) == 0 || len(s) > maxKIDLen {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

const fileHeader = `# auditexport master keys (KEKs): one per line, "<kid> <base64 32-byte key>".
# The FIRST key encrypts new data; every key listed can decrypt.
# To rotate: add a new line at the TOP (kid: 1-32 chars [A-Za-z0-9_-]) and keep
# the old lines until all data has been re-encrypted under the new key.
# Keep this file mode 0600; losing it makes stored credentials unrecoverable.
`

// LoadOrCreate reads the key file at path, creating it with one fresh random
// key if it does not exist. Existing files readable by group/other are refused.
func LoadOrCreate(path string) (*Keyring, error) {
	data, err := readKeyFile(path)
	if err == nil {
		return ParseKeyring(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secrets: create key dir: %w", err)
	}
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secrets: generate key: %w", err)
	}
	sum := sha256.Sum256(key)
	content := fileHeader + "k" + hex.EncodeToString(sum[:])[:8] + " " + base64.StdEncoding.EncodeToString(key) + "\n"

	// The key is written to an O_EXCL temp file and published with link(2),
	// which, like O_EXCL, fails if path exists: a racing process never
	// overwrites the winner's key (orphaning what it encrypted) and never
	// sees a half-written file.
	tmp, err := writeTempKeyFile(filepath.Dir(path), content)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			data, err := readKeyFile(path)
			if err != nil {
				return nil, err
			}
			return ParseKeyring(data)
		}
		return nil, fmt.Errorf("secrets: create key file: %w", err)
	}
	return ParseKeyring([]byte(content))
}

func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets: key file %s has mode %04o and is readable by group/other; fix with: chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: read key file: %w", err)
	}
	return data, nil
}

// ActiveKeyID returns the kid used for new encryptions.
func (k *Keyring) ActiveKeyID() string { return k.active }

// Encrypt seals plaintext under a fresh data key wrapped by the active KEK.
// The same aad must be supplied to Decrypt, binding the blob to its row.
//
// Layout: 0x01 | kidLen(1) | kid | wrappedLen(2, BE) | wrapNonce+wrappedDEK | dataNonce+ciphertext.
func (k *Keyring) Encrypt(plaintext, aad []byte) ([]byte, error) {
	dek := make([]byte, keySize)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("secrets: generate data key: %w", err)
	}
	dataAEAD, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	kek := k.keks[k.active]
	wrapped, err := seal(kek, dek, []byte(k.active))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 4+len(k.active)+len(wrapped)+dataAEAD.NonceSize()+len(plaintext)+dataAEAD.Overhead())
	out = append(out, blobVersion, byte(len(k.active)))
	out = append(out, k.active...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	sealed, err := seal(dataAEAD, plaintext, aad)
	if err != nil {
		return nil, err
	}
	return append(out, sealed...), nil
}

// Decrypt opens a blob produced by Encrypt with any key of the keyring.
// Errors never include key material or plaintext.
func (k *Keyring) Decrypt(blob, aad []byte) ([]byte, error) {
	kid, wrapped, body, err := parseBlob(blob)
	if err != nil {
		return nil, err
	}
	kek, ok := k.keks[kid]
	if !ok {
		return nil, fmt.Errorf("secrets: unknown key id %q (not in keyring)", kid)
	}
	dek, err := open(kek, wrapped, []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("secrets: authentication failed unwrapping data key with key id %q", kid)
	}
	dataAEAD, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	pt, err := open(dataAEAD, body, aad)
	if err != nil {
		return nil, errors.New("secrets: authentication failed (wrong aad or tampered ciphertext)")
	}
	return pt, nil
}

// KeyID returns the kid a blob was encrypted under.
func KeyID(blob []byte) (string, error) {
	kid, _, _, err := parseBlob(blob)
	return kid, err
}

func parseBlob(b []byte) (kid string, wrapped, body []byte, err error) {
	corrupt := func(why string) (string, []byte, []byte, error) {
		return "", nil, nil, fmt.Errorf("secrets: corrupt blob: %s", why)
	}
	if len(b) < 2 {
		return corrupt("too short")
	}
	if b[0] != blobVersion {
		return corrupt(fmt.Sprintf("unsupported version %d", b[0]))
	}
	n := int(b[1])
	b = b[2:]
	if len(b) < n+2 {
		return corrupt("truncated key id")
	}
	kid = string(b[:n])
	if !validKID(kid) {
		return corrupt("invalid key id")
	}
	wl := int(binary.BigEndian.Uint16(b[n:]))
	b = b[n+2:]
	if wl != wrappedSize || len(b) < wl+nonceSize+tagSize {
		return corrupt("bad wrapped key or truncated ciphertext")
	}
	return kid, b[:wl], b[wl:], nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return cipher.NewGCM(block)
}

// seal returns nonce||ciphertext. Random 96-bit nonces are safe here: DEKs
// seal one message each, and a KEK would need ~2^32 blobs before collision
// risk matters.
func seal(a cipher.AEAD, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(pt)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secrets: generate nonce: %w", err)
	}
	return a.Seal(nonce, nonce, pt, aad), nil
}

func open(a cipher.AEAD, b, aad []byte) ([]byte, error) {
	ns := a.NonceSize()
	if len(b) < ns+a.Overhead() {
		return nil, errors.New("short ciphertext")
	}
	return a.Open(nil, b[:ns], b[ns:], aad)
}

// KeyIDs lists the keyring's key ids, the active one first.
func (k *Keyring) KeyIDs() []string {
	out := []string{k.active}
	for kid := range k.keks {
		if kid != k.active {
			out = append(out, kid)
		}
	}
	sort.Strings(out[1:])
	return out
}

// AddKey puts a fresh random key at the top of the key file at path, making
// it the active key of every process that loads the file from then on; the
// older keys stay listed and keep decrypting. The file is replaced
// atomically (temp file, fsync, rename) with mode 0600. It returns the new
// key's id.
func AddKey(path string) (string, error) {
	old, err := readKeyFile(path)
	if err != nil {
		return "", err
	}
	if _, err := ParseKeyring(old); err != nil {
		return "", err
	}
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("secrets: generate key: %w", err)
	}
	sum := sha256.Sum256(key)
	kid := "k" + hex.EncodeToString(sum[:])[:8]
	rest := strings.TrimPrefix(string(old), fileHeader)
	content := fileHeader + kid + " " + base64.StdEncoding.EncodeToString(key) + "\n" + rest
	if _, err := ParseKeyring([]byte(content)); err != nil {
		return "", err // e.g. a (vanishingly unlikely) duplicate key id
	}
	tmp, err := writeTempKeyFile(filepath.Dir(path), content)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("secrets: write key file: %w", err)
	}
	return kid, nil
}

// writeTempKeyFile writes content to a new 0600 temp file in dir, synced to
// disk, and returns its name; the caller publishes it and removes it.
func writeTempKeyFile(dir, content string) (string, error) {
	tmp, err := os.CreateTemp(dir, ".keys-*.tmp")
	if err != nil {
		return "", fmt.Errorf("secrets: create key file: %w", err)
	}
	_, werr := tmp.Write([]byte(content))
	if werr == nil {
		werr = tmp.Chmod(0o600)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return "", fmt.Errorf("secrets: write key file: %w", werr)
	}
	return tmp.Name(), nil
}

// Load reads the key file at path; unlike LoadOrCreate it never creates one.
func Load(path string) (*Keyring, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	return ParseKeyring(data)
}
