package auth

import (
	"strings"
	"testing"
)

func TestNewAPIKeyRoundTrip(t *testing.T) {
	key, prefix, hash := NewAPIKey()
	got, err := ParseAPIKey(key)
	if err != nil {
		t.Fatalf("ParseAPIKey(%q): %v", key, err)
	}
	if got != prefix {
		t.Fatalf("prefix = %q, want %q", got, prefix)
	}
	if !Verify(key, hash) {
		t.Fatal("Verify rejected the key it was made with")
	}
	if Verify(key+"x", hash) || Verify(strings.Replace(key, prefix, "aaaaaaaa", 1), hash) {
		t.Fatal("Verify accepted a different key")
	}
	if strings.Contains(string(hash), key[len(key)-32:]) {
		t.Fatal("hash contains the secret")
	}
	k2, p2, _ := NewAPIKey()
	if k2 == key || p2 == prefix {
		t.Fatal("two keys collided")
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	good, _, _ := NewAPIKey()
	for _, k := range []string{
		"", "Bearer " + good, "aek_", "aek_abc_def", strings.ToUpper(good), good + "a",
		"xyz_" + good[4:], "aek_aaaaaaaa_" + strings.Repeat("1", 32),
	} {
		if _, err := ParseAPIKey(k); err == nil {
			t.Errorf("ParseAPIKey(%q) accepted", k)
		}
	}
}
