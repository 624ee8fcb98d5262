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
	Mail        = "mail_"
	SigningKey  = "sk_"
)

// New returns prefix + a new lowercase ULID. ULIDs sort by creation time to
// the millisecond, which keyset pagination relies on. The 80 random bits are
// drawn afresh from crypto/rand for every id: a monotonic ULID source would
// make ids created in the same millisecond differ only in their last
// characters, so one id would give away its neighbours.
func New(prefix string) string {
	return prefix + strings.ToLower(ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String())
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
