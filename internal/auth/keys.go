// Package auth makes and checks API keys and holds the authenticated caller.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"strings"
)

// keyPrefix marks auditexport API keys so secret scanners can find leaked ones.
const keyPrefix = "aek_"

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrMalformedKey is returned for a bearer token that is not an API key.
var ErrMalformedKey = errors.New("malformed API key")

// NewAPIKey returns a new key "aek_<prefix>_<secret>", its public prefix
// (stored in clear and indexed, to find the row) and the hash of the whole
// key (the only thing stored about the secret). The secret has 160 bits of
// entropy, so a plain SHA-256 is enough: there is nothing to brute-force.
func NewAPIKey() (key, prefix string, hash []byte) {
	p := make([]byte, 5)
	s := make([]byte, 20)
	if _, err := rand.Read(p); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	if _, err := rand.Read(s); err != nil {
		panic(err)
	}
	prefix = strings.ToLower(enc.EncodeToString(p))
	key = keyPrefix + prefix + "_" + strings.ToLower(enc.EncodeToString(s))
	return key, prefix, Hash(key)
}

// ParseAPIKey returns the public prefix of key, or ErrMalformedKey.
func ParseAPIKey(key string) (string, error) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", ErrMalformedKey
	}
	prefix, secret, ok := strings.Cut(rest, "_")
	if !ok || len(prefix) != 8 || len(secret) != 32 {
		return "", ErrMalformedKey
	}
	for _, c := range prefix + secret {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", ErrMalformedKey
		}
	}
	return prefix, nil
}

// ValidKeyFormat reports whether key could be an API key (used to validate
// --bootstrap-admin-key).
func ValidKeyFormat(key string) bool {
	_, err := ParseAPIKey(key)
	return err == nil
}

// Hash is the stored form of a key.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// Verify compares key with a stored hash in constant time.
func Verify(key string, hash []byte) bool {
	return subtle.ConstantTimeCompare(Hash(key), hash) == 1
}
