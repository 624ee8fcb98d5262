package ids

import (
	"strings"
	"testing"
	"time"
)

// Ids made in the same millisecond must not share their random part: with a
// monotonic source they differed only in the last characters, so knowing
// one id let a caller guess its neighbours.
func TestRandomPartIndependentWithinMillisecond(t *testing.T) {
	const n = 2000
	got := make([]string, n)
	for i := range got {
		got[i] = New(Run)
	}
	var sameMS, sharedPrefix int
	for i := 1; i < n; i++ {
		a, b := strings.TrimPrefix(got[i-1], Run), strings.TrimPrefix(got[i], Run)
		if !Valid(Run, got[i]) {
			t.Fatalf("id %q is not valid", got[i])
		}
		if a[:10] != b[:10] { // 48-bit timestamp = first 10 chars
			continue
		}
		sameMS++
		// Four equal leading random characters (20 bits) happen by chance
		// once in a million pairs; a monotonic source shares 15 of 16.
		if a[10:14] == b[10:14] {
			sharedPrefix++
		}
	}
	if sameMS < 10 {
		t.Fatalf("only %d of %d consecutive ids fell in the same millisecond; the check needs more", sameMS, n-1)
	}
	if sharedPrefix > sameMS/100 {
		t.Fatalf("%d of %d same-millisecond id pairs share the first 20 random bits: ids are guessable from their neighbours", sharedPrefix, sameMS)
	}
}

func TestIDsSortByMillisecond(t *testing.T) {
	a := New(Schedule)
	time.Sleep(2 * time.Millisecond)
	b := New(Schedule)
	if !(a < b) {
		t.Fatalf("id made later sorts first: %s >= %s", a, b)
	}
	if len(a) != len(Schedule)+26 || a != strings.ToLower(a) {
		t.Fatalf("unexpected id shape %q", a)
	}
}
