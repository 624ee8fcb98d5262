//go:build race

package auditlog

// raceEnabled: the race detector instruments modernc.org/sqlite (C compiled
// to Go) too, making it ~10x slower; size-driven tests scale down.
const raceEnabled = true
