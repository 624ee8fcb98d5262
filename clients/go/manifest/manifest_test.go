package manifest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestSignOpen(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{Version: Version, OrganizationID: "org_1", ScheduleID: "sch_1", RunID: "run_1", Trigger: "SCHEDULED",
		Element: json.RawMessage(`{"columns":["EVENT_ID"]}`), Format: "CSV", Compression: "GZIP", RowCount: 3, ByteCount: 10,
		SHA256: "ab", ObjectKey: "p/a.csv.gz", CreateTime: time.Unix(1, 0).UTC(), Chain: Chain{Sequence: 1, Start: "first export of this schedule"}}
	file, err := Sign(m, "sk_1", priv)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{"sk_1": pub}
	got, kid, err := Open(file, keys)
	if err != nil || kid != "sk_1" || got.RowCount != 3 || got.Chain.Start == "" || string(got.Element) != `{"columns":["EVENT_ID"]}` {
		t.Fatalf("Open: %+v %q %v", got, kid, err)
	}

	// One flipped bit of the payload, of the signature, or another key.
	var env Envelope
	if err := json.Unmarshal(file, &env); err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte) []byte { c := append([]byte(nil), b...); c[len(c)/2] ^= 1; return c }
	for name, c := range map[string]struct {
		env  Envelope
		keys map[string]ed25519.PublicKey
		want error
	}{
		"payload":     {Envelope{env.PayloadType, flip(env.Payload), env.Signatures}, keys, ErrBadSignature},
		"signature":   {Envelope{env.PayloadType, env.Payload, []Signature{{"sk_1", flip(env.Signatures[0].Sig)}}}, keys, ErrBadSignature},
		"unknown key": {env, map[string]ed25519.PublicKey{"sk_2": pub}, ErrUnknownKey},
		"other key":   {env, map[string]ed25519.PublicKey{"sk_1": make(ed25519.PublicKey, ed25519.PublicKeySize)}, ErrBadSignature},
		"type":        {Envelope{"text/plain", env.Payload, env.Signatures}, keys, ErrMalformed},
		"unsigned":    {Envelope{env.PayloadType, env.Payload, nil}, keys, ErrBadSignature},
	} {
		b, _ := json.Marshal(c.env)
		if _, _, err := Open(b, c.keys); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, _, err := Open([]byte("not json"), keys); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
	if Hash(file) == Hash(append(file, ' ')) || len(Hash(file)) != 64 {
		t.Error("Hash")
	}
}

// TestPAE pins DSSE's pre-authentication encoding (the DSSE spec's example).
func TestPAE(t *testing.T) {
	if got := string(PAE("http://example.com/HelloWorld", []byte("hello world"))); got != "DSSEv1 29 http://example.com/HelloWorld 11 hello world" {
		t.Errorf("PAE: %q", got)
	}
}
