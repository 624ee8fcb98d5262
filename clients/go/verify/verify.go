// Package verify checks exported objects and their signed manifests
// (clients/go/manifest) directly in storage, with the reader's own
// credentials and without the server: every signature against the
// organization's public keys, every object's bytes (sha256, size) and row
// count, every schedule's chain of manifests (no missing, inserted or
// reordered link) and, for incremental schedules, that the exported
// insert-sequence windows tile with no gap or overlap.
//
// What it cannot see offline: manifests deleted from the end of a chain
// (nothing after them names them). Options.Heads closes that gap with the
// chain heads the server reports (Schedule.manifest_chain_length/head).
package verify

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"gocloud.dev/blob"

	"github.com/auditexport/auditexport/clients/go/manifest"
)

// Kinds of findings.
const (
	NoManifests       = "NO_MANIFESTS"       // nothing under the prefix is signed
	ManifestMissing   = "MANIFEST_MISSING"   // an object without its manifest
	ObjectMissing     = "OBJECT_MISSING"     // a manifest whose object is gone
	BadSignature      = "BAD_SIGNATURE"      // signature does not verify
	UnknownKey        = "UNKNOWN_KEY"        // signed by a key not in the key set
	Malformed         = "MALFORMED_MANIFEST" // not a manifest this verifier reads
	Misplaced         = "MISPLACED"          // manifest names another object key
	ChecksumMismatch  = "CHECKSUM_MISMATCH"  // object bytes differ from the manifest's sha256
	SizeMismatch      = "SIZE_MISMATCH"      // object size differs
	RowCountMismatch  = "ROW_COUNT_MISMATCH" // rows in the object differ
	Unreadable        = "UNREADABLE"         // object does not decode as its format
	ChainGap          = "CHAIN_GAP"          // links of a chain are missing
	ChainBroken       = "CHAIN_BROKEN"       // a link does not name its predecessor's hash
	DuplicateLink     = "DUPLICATE_LINK"     // two manifests claim one chain position
	DuplicatePeriod   = "DUPLICATE_PERIOD"   // one scheduled period exported twice
	WindowGap         = "WINDOW_GAP"         // incremental rows between two exports are missing
	WindowOverlap     = "WINDOW_OVERLAP"     // incremental rows exported twice
	HeadMismatch      = "HEAD_MISMATCH"      // the chain in storage ends before the server's head
	UnknownSchedule   = "SCHEDULE_NOT_FOUND" // Heads given, but a manifest's schedule is not in it
	ReadFailed        = "READ_FAILED"        // storage refused a read
	manifestReadLimit = 1 << 20
)

// Finding is one problem, naming the object (or manifest) it is about.
type Finding struct {
	Kind   string `json:"kind"`
	Object string `json:"object"`
	Detail string `json:"detail"`
}

func (f Finding) String() string { return f.Kind + " " + f.Object + ": " + f.Detail }

// Head is a schedule's chain head as the server reports it.
type Head struct {
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

// Options configure a verification.
type Options struct {
	// Keys are the organization's public keys by key id (required).
	Keys map[string]ed25519.PublicKey
	// Heads, when set, are the chain heads by schedule id; each chain in
	// storage must end exactly there, and every schedule of Heads that
	// has manifests must be found.
	Heads map[string]Head
}

// Chain summarises one schedule's verified chain.
type Chain struct {
	ScheduleID   string    `json:"schedule_id"`
	ScheduleName string    `json:"schedule_name"`
	Links        int       `json:"links"`
	First        int64     `json:"first_sequence"`
	Last         int64     `json:"last_sequence"`
	Rows         int64     `json:"rows"`
	Start        string    `json:"start,omitempty"`
	LastCreated  time.Time `json:"last_create_time"`
}

// Report is what Bucket found.
type Report struct {
	Prefix    string    `json:"prefix"`
	Objects   int       `json:"objects"`
	Manifests int       `json:"manifests"`
	Verified  int       `json:"verified_objects"`
	Chains    []Chain   `json:"chains"`
	Findings  []Finding `json:"findings"`
	// Unsigned objects older than every manifest under the prefix: exports
	// written before the server signed manifests (not findings).
	Unsigned []string `json:"unsigned_predating_manifests,omitempty"`
}

// OK is true when nothing was found.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

func (r *Report) add(kind, object, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Kind: kind, Object: object, Detail: fmt.Sprintf(format, args...)})
}

type entry struct {
	key  string
	size int64
	mod  time.Time
}

type link struct {
	key  string // the manifest's key
	file []byte
	m    *manifest.Manifest
}

// Bucket verifies everything under prefix in b.
func Bucket(ctx context.Context, b *blob.Bucket, prefix string, opt Options) (*Report, error) {
	if len(opt.Keys) == 0 {
		return nil, errors.New("no public keys: pass the organization's signing keys (auditctl signing-keys list -o json)")
	}
	rep := &Report{Prefix: prefix, Findings: []Finding{}, Chains: []Chain{}}
	objects := map[string]entry{}
	var manifests []entry
	it := b.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing %q: %w", prefix, err)
		}
		if obj.IsDir {
			continue
		}
		e := entry{key: obj.Key, size: obj.Size, mod: obj.ModTime}
		if strings.HasSuffix(obj.Key, manifest.Suffix) {
			manifests = append(manifests, e)
		} else {
			objects[obj.Key] = e
		}
	}
	rep.Objects, rep.Manifests = len(objects), len(manifests)
	signedFor := map[string]bool{} // object keys that have a manifest file, valid or not
	var links []link
	var earliest time.Time
	for _, me := range manifests {
		objKey := strings.TrimSuffix(me.key, manifest.Suffix)
		signedFor[objKey] = true
		file, err := readLimited(ctx, b, me.key, manifestReadLimit)
		if err != nil {
			rep.add(ReadFailed, me.key, "%v", err)
			continue
		}
		m, _, err := manifest.Open(file, opt.Keys)
		switch {
		case errors.Is(err, manifest.ErrUnknownKey):
			rep.add(UnknownKey, me.key, "%v: not one of the organization's keys given to the verifier", err)
			continue
		case errors.Is(err, manifest.ErrBadSignature):
			rep.add(BadSignature, me.key, "%v: the manifest was altered or forged", err)
			continue
		case err != nil:
			rep.add(Malformed, me.key, "%v", err)
			continue
		}
		if earliest.IsZero() || m.CreateTime.Before(earliest) {
			earliest = m.CreateTime
		}
		links = append(links, link{key: me.key, file: file, m: m})
		if !sameKey(m.ObjectKey, objKey) {
			rep.add(Misplaced, me.key, "the manifest was signed for object %q, not %q: objects or manifests were moved", m.ObjectKey, objKey)
			continue
		}
		oe, ok := objects[objKey]
		if !ok {
			rep.add(ObjectMissing, objKey, "the signed manifest %s names this object (%d rows, sha256 %s) but it is not in storage", me.key, m.RowCount, short(m.SHA256))
			continue
		}
		if checkObject(ctx, b, oe, m, rep) {
			rep.Verified++
		}
	}
	keys := make([]string, 0, len(objects))
	for k := range objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if signedFor[k] {
			continue
		}
		if !earliest.IsZero() && objects[k].mod.Before(earliest.Add(-time.Second)) {
			rep.Unsigned = append(rep.Unsigned, k)
			continue
		}
		if len(links) > 0 {
			rep.add(ManifestMissing, k, "no manifest %s: the object is not signed, or its manifest was deleted", path.Base(k)+manifest.Suffix)
		}
	}
	if len(manifests) == 0 {
		rep.add(NoManifests, prefix, "no manifests under this prefix (%d objects): nothing here can be verified", len(objects))
	}
	checkChains(links, opt, rep)
	sort.SliceStable(rep.Findings, func(i, j int) bool { return rep.Findings[i].Object < rep.Findings[j].Object })
	return rep, nil
}

// sameKey: the manifest names the object's key in its bucket; the verifier
// may have opened the storage at another root (a LOCAL directory), so one
// key may end with the other at a path boundary.
func sameKey(signed, found string) bool {
	return signed == found || strings.HasSuffix(signed, "/"+found) || strings.HasSuffix(found, "/"+signed)
}

func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16] + "…"
	}
	return sum
}

func readLimited(ctx context.Context, b *blob.Bucket, key string, limit int64) ([]byte, error) {
	r, err := b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: not a manifest", limit)
	}
	return data, nil
}

// checkObject reads the object once: its sha256, size and rows.
func checkObject(ctx context.Context, b *blob.Bucket, oe entry, m *manifest.Manifest, rep *Report) bool {
	r, err := b.NewReader(ctx, oe.key, nil)
	if err != nil {
		rep.add(ReadFailed, oe.key, "%v", err)
		return false
	}
	defer r.Close()
	h := sha256.New()
	var rows int64
	var size int64
	var rowErr error
	if strings.EqualFold(m.Format, "PARQUET") {
		// Parquet is read from its footer: spool it to a temporary file.
		f, err := os.CreateTemp("", "auditexport-verify-*.parquet")
		if err != nil {
			rep.add(ReadFailed, oe.key, "%v", err)
			return false
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if size, err = io.Copy(io.MultiWriter(f, h), r); err != nil {
			rep.add(ReadFailed, oe.key, "%v", err)
			return false
		}
		pf, err := parquet.OpenFile(f, size)
		if err != nil {
			rowErr = err
		} else {
			rows = pf.NumRows()
		}
	} else {
		cr := &countReader{r: io.TeeReader(r, h)}
		rows, rowErr = countRows(cr, m.Format, m.Compression)
		// Drain what the decoder did not need (e.g. trailing bytes) so the
		// checksum covers the whole object.
		if _, err := io.Copy(io.Discard, cr); err != nil && rowErr == nil {
			rowErr = err
		}
		size = cr.n
	}
	sum := hex.EncodeToString(h.Sum(nil))
	ok := true
	if sum != m.SHA256 {
		rep.add(ChecksumMismatch, oe.key, "sha256 is %s, the signed manifest says %s: the object was altered or replaced", short(sum), short(m.SHA256))
		ok = false
	}
	if size != m.ByteCount {
		rep.add(SizeMismatch, oe.key, "%d bytes, the signed manifest says %d", size, m.ByteCount)
		ok = false
	}
	switch {
	case rowErr != nil && ok:
		rep.add(Unreadable, oe.key, "does not read as %s/%s: %v", m.Format, m.Compression, rowErr)
		ok = false
	case rowErr == nil && rows != m.RowCount:
		rep.add(RowCountMismatch, oe.key, "%d rows, the signed manifest says %d", rows, m.RowCount)
		ok = false
	}
	return ok
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// countRows counts the data rows of a CSV (records after the header) or
// JSONL (non-empty lines) stream, decompressed as compression says.
func countRows(r io.Reader, format, compression string) (int64, error) {
	switch strings.ToUpper(compression) {
	case "GZIP":
		gz, err := gzip.NewReader(r)
		if err != nil {
			return 0, err
		}
		defer gz.Close()
		r = gz
	case "ZSTD":
		zr, err := zstd.NewReader(r)
		if err != nil {
			return 0, err
		}
		defer zr.Close()
		r = zr
	case "NONE", "":
	default:
		return 0, fmt.Errorf("unknown compression %q", compression)
	}
	switch strings.ToUpper(format) {
	case "CSV":
		cr := csv.NewReader(r)
		cr.FieldsPerRecord = -1
		cr.ReuseRecord = true
		var n int64
		for {
			_, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, err
			}
			n++
		}
		if n == 0 {
			return 0, errors.New("no header row")
		}
		return n - 1, nil
	case "JSONL":
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		var n int64
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			if !json.Valid(line) {
				return 0, fmt.Errorf("line %d is not JSON", n+1)
			}
			n++
		}
		return n, sc.Err()
	}
	return 0, fmt.Errorf("unknown format %q", format)
}

// checkChains checks each schedule's chain of valid manifests.
func checkChains(links []link, opt Options, rep *Report) {
	bySchedule := map[string][]link{}
	for _, l := range links {
		bySchedule[l.m.ScheduleID] = append(bySchedule[l.m.ScheduleID], l)
	}
	ids := make([]string, 0, len(bySchedule))
	for id := range bySchedule {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ls := bySchedule[id]
		sort.SliceStable(ls, func(i, j int) bool { return ls[i].m.Chain.Sequence < ls[j].m.Chain.Sequence })
		ch := Chain{ScheduleID: id, ScheduleName: ls[len(ls)-1].m.ScheduleName, First: ls[0].m.Chain.Sequence, Last: ls[len(ls)-1].m.Chain.Sequence}
		if ls[0].m.Chain.Sequence != 1 {
			rep.add(ChainGap, ls[0].key, "schedule %s: the chain's first manifest here is #%d; #1 to #%d are missing", id, ls[0].m.Chain.Sequence, ls[0].m.Chain.Sequence-1)
		} else {
			ch.Start = ls[0].m.Chain.Start
			if ls[0].m.Chain.Previous != "" {
				rep.add(ChainBroken, ls[0].key, "schedule %s: manifest #1 names a previous manifest %s", id, short(ls[0].m.Chain.Previous))
			}
		}
		periods := map[string]string{}
		var prev *link
		for i := range ls {
			l := &ls[i]
			ch.Links++
			ch.Rows += l.m.RowCount
			if l.m.CreateTime.After(ch.LastCreated) {
				ch.LastCreated = l.m.CreateTime
			}
			if l.m.Trigger == "SCHEDULED" {
				p := l.m.PeriodStart.Format(time.RFC3339) + "/" + l.m.PeriodEnd.Format(time.RFC3339)
				if other, dup := periods[p]; dup {
					rep.add(DuplicatePeriod, l.key, "schedule %s: period %s was exported twice (also %s)", id, p, other)
				} else {
					periods[p] = l.key
				}
			}
			if prev != nil {
				ps, s := prev.m.Chain.Sequence, l.m.Chain.Sequence
				switch {
				case s == ps:
					rep.add(DuplicateLink, l.key, "schedule %s: two manifests claim chain position #%d (also %s)", id, s, prev.key)
					continue
				case s > ps+1:
					rep.add(ChainGap, l.key, "schedule %s: manifests #%d to #%d are missing between %s and this one", id, ps+1, s-1, prev.key)
				case l.m.Chain.Previous != manifest.Hash(prev.file):
					rep.add(ChainBroken, l.key, "schedule %s: manifest #%d names previous %s, but #%d (%s) hashes to %s", id, s, short(l.m.Chain.Previous), ps, prev.key, short(manifest.Hash(prev.file)))
				}
				if w, pw := l.m.SequenceWindow, prev.m.SequenceWindow; w != nil && pw != nil && s == ps+1 {
					switch {
					case w.After > pw.Through:
						rep.add(WindowGap, l.key, "schedule %s: audit rows with insert sequence %d to %d were exported by no object", id, pw.Through+1, w.After)
					case w.After < pw.Through:
						rep.add(WindowOverlap, l.key, "schedule %s: audit rows with insert sequence %d to %d were exported twice (also by %s)", id, w.After+1, pw.Through, prev.key)
					}
				}
			}
			prev = l
		}
		if opt.Heads != nil {
			h, ok := opt.Heads[id]
			last := ls[len(ls)-1]
			switch {
			case !ok:
				rep.add(UnknownSchedule, last.key, "schedule %s is not among the schedules whose chain heads were given", id)
			case h.Length != last.m.Chain.Sequence || h.SHA256 != manifest.Hash(last.file):
				rep.add(HeadMismatch, last.key, "schedule %s: storage's chain ends at #%d (%s), the server's at #%d (%s): the newest manifests are missing",
					id, last.m.Chain.Sequence, short(manifest.Hash(last.file)), h.Length, short(h.SHA256))
			}
		}
		rep.Chains = append(rep.Chains, ch)
	}
	if opt.Heads != nil {
		for id, h := range opt.Heads {
			if _, ok := bySchedule[id]; !ok && h.Length > 0 {
				rep.add(HeadMismatch, id, "schedule %s has %d manifests on the server and none under this prefix", id, h.Length)
			}
		}
	}
}
