//go:build race

package bench

// raceEnabled: the test binary was built with -race.
const raceEnabled = true
