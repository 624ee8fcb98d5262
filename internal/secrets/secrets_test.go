package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func keyLine(t *testing.T, kid string) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return kid + " " + base64.StdEncoding.EncodeToString(k)
}

func mustKeyring(t *testing.T, lines ...string) *Keyring {
	t.Helper()
	kr, err := ParseKeyring([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestRoundTrip(t *testing.T) {
	kr := mustKeyring(t, "# comment", "", keyLine(t, "k1"))
	for _, pt := range [][]byte{nil, []byte("x"), []byte(`{"secret_access_key":"AKIA..."}`), bytes.Repeat([]byte{7}, 1<<16)} {
		blob, err := kr.Encrypt(pt, []byte("row-1"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := kr.Decrypt(blob, []byte("row-1"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip mismatch for %d bytes", len(pt))
		}
		if kid, err := KeyID(blob); err != nil || kid != "k1" {
			t.Fatalf("KeyID = %q, %v", kid, err)
		}
	}
}

func TestWrongAADFails(t *testing.T) {
	kr := mustKeyring(t, keyLine(t, "k1"))
	blob, _ := kr.Encrypt([]byte("secret"), []byte("row-1"))
	for _, aad := range [][]byte{[]byte("row-2"), nil, []byte("row-1 ")} {
		if _, err := kr.Decrypt(blob, aad); err == nil || !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("aad %q: err = %v, want authentication failure", aad, err)
		}
	}
}

func TestTamperAnyByteFails(t *testing.T) {
	kr := mustKeyring(t, keyLine(t, "k1"))
	blob, _ := kr.Encrypt([]byte("secret"), []byte("row-1"))
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x01
		if pt, err := kr.Decrypt(bad, []byte("row-1")); err == nil {
			t.Fatalf("byte %d flipped: decrypt succeeded with %q", i, pt)
		}
	}
	for n := range blob {
		if _, err := kr.Decrypt(blob[:n], []byte("row-1")); err == nil {
			t.Fatalf("truncated to %d bytes: decrypt succeeded", n)
		}
	}
	if _, err := kr.Decrypt(append(bytes.Clone(blob), 0), []byte("row-1")); err == nil {
		t.Fatal("appended byte: decrypt succeeded")
	}
}

func TestCiphertextHidesPlaintext(t *testing.T) {
	kr := mustKeyring(t, keyLine(t, "k1"))
	pt := []byte("super-secret-credential-value")
	blob, _ := kr.Encrypt(pt, nil)
	if bytes.Contains(blob, pt) {
		t.Fatal("blob contains plaintext")
	}
	again, _ := kr.Encrypt(pt, nil)
	if bytes.Equal(blob, again) {
		t.Fatal("two encryptions produced identical blobs")
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := keyLine(t, "k1"), keyLine(t, "k2")
	a := mustKeyring(t, k1)
	old, _ := a.Encrypt([]byte("old"), []byte("id"))

	b := mustKeyring(t, k2, k1)
	if b.ActiveKeyID() != "k2" {
		t.Fatalf("active = %q, want k2", b.ActiveKeyID())
	}
	if got, err := b.Decrypt(old, []byte("id")); err != nil || string(got) != "old" {
		t.Fatalf("decrypt old blob: %q, %v", got, err)
	}
	fresh, _ := b.Encrypt([]byte("new"), []byte("id"))
	if kid, _ := KeyID(fresh); kid != "k2" {
		t.Fatalf("new blob kid = %q, want k2", kid)
	}
	// The old keyring has never seen k2.
	_, err := a.Decrypt(fresh, []byte("id"))
	if err == nil || !strings.Contains(err.Error(), `unknown key id "k2"`) {
		t.Fatalf("err = %v, want unknown key id", err)
	}
}

func TestSameKIDDifferentKeyFails(t *testing.T) {
	blob, _ := mustKeyring(t, keyLine(t, "k1")).Encrypt([]byte("s"), nil)
	if _, err := mustKeyring(t, keyLine(t, "k1")).Decrypt(blob, nil); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("err = %v, want authentication failure", err)
	}
}

func TestParseKeyringErrors(t *testing.T) {
	good := keyLine(t, "k1")
	short := "k2 " + base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "no keys"},
		{"only comments", "# hi\n\n", "no keys"},
		{"bad base64", "# c\nk1 not*base64!", "line 2"},
		{"16-byte key", short, "line 1: key is 16 bytes"},
		{"dup kid", good + "\n\n" + good, "line 3: duplicate key id"},
		{"bad kid", "k/1 " + strings.Fields(good)[1], "line 1: invalid key id"},
		{"long kid", strings.Repeat("a", 33) + " " + strings.Fields(good)[1], "line 1: invalid key id"},
		{"missing key", "k1", "line 1"},
		{"extra field", good + " extra", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyring([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestKeyIDCorrupt(t *testing.T) {
	for _, b := range [][]byte{nil, {1}, {2, 2, 'k', '1'}, {1, 5, 'k'}} {
		if _, err := KeyID(b); err == nil || !strings.Contains(err.Error(), "corrupt blob") {
			t.Errorf("KeyID(%v) err = %v", b, err)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "keys")
	kr1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %o, want 600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm()&0o077 != 0 {
		t.Fatalf("dir mode = %o, want no group/other bits", di.Mode().Perm())
	}
	if id := kr1.ActiveKeyID(); len(id) != 9 || id[0] != 'k' {
		t.Fatalf("active kid = %q, want k + 8 hex", id)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("key dir has %d entries, want only the key file (temp file leaked?)", len(ents))
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "TOP") {
		t.Fatal("key file lacks rotation comment")
	}

	kr2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if kr2.ActiveKeyID() != kr1.ActiveKeyID() {
		t.Fatalf("second load kid %q != %q", kr2.ActiveKeyID(), kr1.ActiveKeyID())
	}
	blob, _ := kr1.Encrypt([]byte("s"), nil)
	if _, err := kr2.Decrypt(blob, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateRefusesOpenPerms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(keyLine(t, "k1")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreate(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v, want refusal naming path and chmod 600", err)
	}
}

func TestLoadOrCreateConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	const n = 8
	ids := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			kr, err := LoadOrCreate(path)
			if err != nil {
				errs <- err
				return
			}
			ids <- kr.ActiveKeyID()
		}()
	}
	var first string
	for range n {
		select {
		case err := <-errs:
			t.Fatalf("concurrent LoadOrCreate: %v", err)
		case id := <-ids:
			if first == "" {
				first = id
			} else if id != first {
				t.Fatalf("racing callers got different keys %q and %q", first, id)
			}
		}
	}
}
