package cron

import (
	"testing"
	"time"
)

func TestDecideCatchUp(t *testing.T) {
	c, err := Parse("0 * * * *", "UTC")
	if err != nil {
		t.Fatal(err)
	}
	at := func(h, m int) time.Time { return time.Date(2026, 5, 1, h, m, 0, 0, time.UTC) }
	cases := []struct {
		name   string
		due    Due
		now    time.Time
		run    bool
		start  time.Time
		end    time.Time
		missed int
		next   time.Time
	}{
		{"on time", Due{at(10, 0), "ONE"}, at(10, 0).Add(300 * time.Millisecond), true, at(9, 0), at(10, 0), 0, at(11, 0)},
		{"late within the period", Due{at(10, 0), "NONE"}, at(10, 40), true, at(9, 0), at(10, 0), 0, at(11, 0)},
		{"down 5h, ONE run covers all", Due{at(10, 0), "ONE"}, at(15, 30), true, at(9, 0), at(15, 0), 5, at(16, 0)},
		{"down 5h, NONE skips", Due{at(10, 0), "NONE"}, at(15, 30), false, time.Time{}, time.Time{}, 5, at(16, 0)},
		{"exactly at the next fire time", Due{at(10, 0), "ONE"}, at(11, 0), true, at(9, 0), at(11, 0), 1, at(12, 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := c.Decide(tc.due, tc.now)
			if d.Run != tc.run || d.Missed != tc.missed || !d.Next.Equal(tc.next) {
				t.Fatalf("Decide = %+v, want run=%v missed=%d next=%v", d, tc.run, tc.missed, tc.next)
			}
			if tc.run && (!d.PeriodStart.Equal(tc.start) || !d.PeriodEnd.Equal(tc.end)) {
				t.Fatalf("period = [%v, %v], want [%v, %v]", d.PeriodStart, d.PeriodEnd, tc.start, tc.end)
			}
		})
	}
}

func TestDecideBoundsEveryMinuteBacklog(t *testing.T) {
	c, _ := Parse("* * * * *", "Europe/Berlin")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := c.Decide(Due{start, "ONE"}, start.Add(60*24*time.Hour))
	if !d.Run || d.Missed != maxMissedCount {
		t.Fatalf("Decide after 60 days of an every-minute schedule = %+v", d)
	}
	if want := start.Add(60 * 24 * time.Hour); !d.PeriodEnd.Equal(want) {
		t.Fatalf("period end %v, want the latest fire time %v", d.PeriodEnd, want)
	}
	if !d.Next.After(start.Add(60 * 24 * time.Hour)) {
		t.Fatalf("next %v is not after now", d.Next)
	}
}
