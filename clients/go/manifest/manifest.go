// Package manifest is the format of the signed manifest auditexport writes
// next to every exported object, shared by the server (which signs) and by
// verifiers (auditctl verify, or an auditor's own program).
//
// A manifest file (<object key>.manifest.json) is a DSSE envelope
// (https://github.com/secure-systems-lab/dsse): the JSON of a Manifest as
// its base64 payload, with an Ed25519 signature of the organization's
// signing key over DSSE's pre-authentication encoding of payload type and
// payload. Signing the exact payload bytes needs no JSON canonicalization:
// a verifier checks the signature over the bytes it read, then decodes them.
//
// Manifests of one schedule form a chain: each names the sha256 of the
// previous manifest file's bytes and its position (sequence, from 1), so a
// deleted, inserted or reordered manifest breaks the chain.
package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// PayloadType names the payload in the envelope (and in what is signed).
const PayloadType = "application/vnd.auditexport.manifest.v1+json"

// Suffix is appended to an object's key to name its manifest.
const Suffix = ".manifest.json"

// Version is the manifest format version this package writes.
const Version = 1

// Manifest describes one exported object.
type Manifest struct {
	Version        int    `json:"version"`
	OrganizationID string `json:"organization_id"`
	ScheduleID     string `json:"schedule_id"`
	ScheduleName   string `json:"schedule_name"`
	RunID          string `json:"run_id"`
	// Trigger: SCHEDULED, SEND_NOW or RETRY.
	Trigger string `json:"trigger"`
	// The period a scheduled run stands for (the cron's fire times); for
	// other runs the period the run's relative time range was rendered at.
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	// Incremental schedules: the audit rows exported are those with
	// After < insert sequence <= Through. Nil for snapshot schedules.
	SequenceWindow *Window `json:"sequence_window,omitempty"`
	// The workbook element's definition as exported (columns, filters,
	// sort, relative time range).
	ElementID   string          `json:"element_id"`
	Element     json.RawMessage `json:"element"`
	Format      string          `json:"format"`
	Compression string          `json:"compression"`
	RowCount    int64           `json:"row_count"`
	// ByteCount and SHA256 (hex) are of the object's bytes as stored.
	ByteCount int64  `json:"byte_count"`
	SHA256    string `json:"sha256"`
	// ObjectKey is the object's key in its bucket (LOCAL: relative to the
	// integration's directory); ObjectURI the whole destination URI.
	ObjectKey  string    `json:"object_key"`
	ObjectURI  string    `json:"object_uri"`
	CreateTime time.Time `json:"create_time"`
	Chain      Chain     `json:"chain"`
}

// Window is an incremental run's range of audit-log insert sequences.
type Window struct {
	After   int64 `json:"after"`
	Through int64 `json:"through"`
}

// Chain links a manifest to its schedule's previous one.
type Chain struct {
	// Sequence is the manifest's position in its schedule's chain, from 1.
	Sequence int64 `json:"sequence"`
	// Previous is the sha256 (hex) of the previous manifest file's bytes;
	// empty for the first.
	Previous string `json:"previous_manifest_sha256"`
	// Start explains a first link (e.g. runs of the schedule that predate
	// manifests); empty otherwise.
	Start string `json:"start,omitempty"`
}

// Envelope is the manifest file: a DSSE envelope.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     []byte      `json:"payload"` // base64 in JSON
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an envelope.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"` // base64 in JSON
}

// init builds encoding/json's per-type caches for the manifest types before
// any goroutine runs: under the race detector their first concurrent use
// (two runs signing at once in a fresh server) was reported as a race
// inside encoding/json (typeFields' sort) and killed the -race server.
func init() {
	b, _ := json.Marshal(Envelope{Signatures: []Signature{{}}})
	_ = json.Unmarshal(b, new(Envelope))
	b, _ = json.Marshal(Manifest{SequenceWindow: &Window{}, Element: json.RawMessage(`{}`)})
	_ = json.Unmarshal(b, new(Manifest))
}

// PAE is DSSE's pre-authentication encoding: what is signed.
func PAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// Sign encodes m, signs it with priv under keyID and returns the manifest
// file's bytes.
func Sign(m *Manifest, keyID string, priv ed25519.PrivateKey) ([]byte, error) {
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	env := Envelope{PayloadType: PayloadType, Payload: payload, Signatures: []Signature{{
		KeyID: keyID, Sig: ed25519.Sign(priv, PAE(PayloadType, payload)),
	}}}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Hash is the sha256 (hex) of a manifest file's bytes, as the next link
// of its chain names it.
func Hash(file []byte) string {
	s := sha256.Sum256(file)
	return hex.EncodeToString(s[:])
}

// Errors of Open; a finding wraps one of them.
var (
	ErrMalformed    = errors.New("not a manifest")
	ErrUnknownKey   = errors.New("signed by an unknown key")
	ErrBadSignature = errors.New("signature does not verify")
)

// Open checks a manifest file's signature against keys (key id → public
// key) and decodes it. It returns the id of the key that signed it.
// Unsigned content is never decoded: a forged manifest fails before its
// claims are read.
func Open(file []byte, keys map[string]ed25519.PublicKey) (*Manifest, string, error) {
	var env Envelope
	if err := json.Unmarshal(file, &env); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.PayloadType != PayloadType {
		return nil, "", fmt.Errorf("%w: payload type %q", ErrMalformed, env.PayloadType)
	}
	if len(env.Signatures) == 0 {
		return nil, "", fmt.Errorf("%w: no signature", ErrBadSignature)
	}
	pae := PAE(env.PayloadType, env.Payload)
	var unknown []string
	for _, s := range env.Signatures {
		pub, ok := keys[s.KeyID]
		if !ok {
			unknown = append(unknown, s.KeyID)
			continue
		}
		if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, pae, s.Sig) {
			return nil, s.KeyID, fmt.Errorf("%w (key %s)", ErrBadSignature, s.KeyID)
		}
		var m Manifest
		if err := json.Unmarshal(env.Payload, &m); err != nil {
			return nil, s.KeyID, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
		}
		if m.Version != Version {
			return nil, s.KeyID, fmt.Errorf("%w: version %d (this verifier knows %d)", ErrMalformed, m.Version, Version)
		}
		return &m, s.KeyID, nil
	}
	return nil, "", fmt.Errorf("%w %v", ErrUnknownKey, unknown)
}
