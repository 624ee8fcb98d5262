// Package ids makes the service's prefixed ULID identifiers.
package ids

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Prefixes of the resource ids.
const (
	Org         = "org_"
	User        = "usr_"
	APIKey      = "key_"
	Integration = "int_"
	Connection  = "con_"
	Workbook    = "wb_"
	Element     = "el_"
	Schedule    = "sch_"
	Run         = "run_"
	Event       = "evt_"
	Grant       = "grt_"
)

var (
	mu      sync.Mutex
	entropy = ulid.Monotonic(rand.Reader, 0)
)

// New returns prefix + a new lowercase ULID. ULIDs sort by creation time,
// which keyset pagination relies on.
func New(prefix string) string {
	mu.Lock()
	id := ulid.MustNew(ulid.Timestamp(time.Now()), entropy)
	mu.Unlock()
	return prefix + strings.ToLower(id.String())
}

// Func returns a generator for prefix, for ent DefaultFunc.
func Func(prefix string) func() string {
	return func() string { return New(prefix) }
}

// Valid reports whether s looks like an id with the prefix (cheap syntactic check).
func Valid(prefix, s string) bool {
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	_, err := ulid.ParseStrict(strings.ToUpper(s[len(prefix):]))
	return err == nil
}

var process = sync.OnceValue(func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), strings.ToLower(rand.Text()[:6]))
})

// Process names this process as the runner of the export runs it owns
// (export_runs.runner): host:pid plus a random suffix drawn once, so two
// processes never share a name even when containers reuse host names and
// pids. It is never empty — an empty runner means "not claimed".
func Process() string { return process() }
