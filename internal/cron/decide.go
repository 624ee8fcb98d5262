package cron

import (
	"time"
)

// Due describes a schedule whose next_run_time has passed, as the
// dispatcher sees it.
type Due struct {
	// NextRun is the stored next_run_time (the fire time that is due).
	NextRun time.Time
	// CatchUp is "ONE" or "NONE".
	CatchUp string
}

// Decision is what the dispatcher does with a due schedule.
type Decision struct {
	// Run is false when missed periods are skipped (CATCH_UP_NONE).
	Run bool
	// PeriodStart/PeriodEnd of the run: PeriodEnd is the fire time the run
	// stands for (the latest one not after now); PeriodStart the fire time
	// before the first period it covers.
	PeriodStart, PeriodEnd time.Time
	// Missed counts fire times between NextRun and now that the run (or
	// the skip) covers beyond the first.
	Missed int
	// Next is the new next_run_time: the first fire time after now.
	Next time.Time
}

// maxMissedCount bounds how far Decide counts missed fire times (an
// every-minute schedule after a month down would otherwise count 43,200).
const maxMissedCount = 10_000

// Decide applies the catch-up policy to a due schedule at now:
//
//   - On time (no later fire time has passed): one run for the period
//     ending at NextRun.
//   - After downtime, CATCH_UP_ONE: exactly one run, covering every missed
//     period: from the fire time before NextRun to the latest fire time not
//     after now. Never a burst of runs.
//   - After downtime, CATCH_UP_NONE: the missed periods are skipped; if the
//     latest missed fire time is NextRun itself (i.e. we are only late, not
//     past another fire time), it still runs.
//
// In every case the next run is the first fire time after now.
func (c *Cron) Decide(d Due, now time.Time) Decision {
	out := Decision{Next: c.Next(now)}
	latest := d.NextRun
	for t := c.Next(d.NextRun); !t.IsZero() && !t.After(now) && out.Missed < maxMissedCount; t = c.Next(t) {
		latest = t
		out.Missed++
	}
	if out.Missed > 0 && d.CatchUp == "NONE" {
		return out
	}
	if out.Missed > 0 {
		if p := c.Prev(now); !p.IsZero() && p.After(latest) {
			latest = p // the count stopped at maxMissedCount
		}
	}
	out.Run = true
	out.PeriodEnd = latest
	out.PeriodStart = c.Prev(d.NextRun.Add(-time.Nanosecond))
	if out.PeriodStart.IsZero() {
		out.PeriodStart = d.NextRun
	}
	return out
}
