package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"

	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/tenant"
)

// maxTrackedClients bounds the memory of the failure limits; beyond it,
// new client IPs share one bucket and one audit window ("*").
const maxTrackedClients = 10000

// authRetryAfter is the RetryInfo of a throttled client.
const authRetryAfter = 30 * time.Second

// AuthFailureLimits configures the guards on failed authentication.
type AuthFailureLimits struct {
	// PerMinute failures one client IP may make before its calls are
	// refused with RESOURCE_EXHAUSTED (burst and refill per minute; 0: off).
	PerMinute int
	// AuditRows per client IP and organization per Window (0: every
	// failure gets its own row). Further failures are counted and written
	// as one summary row when the window closes.
	AuditRows int
	Window    time.Duration
}

// authLimits holds per-IP token buckets and per-(IP, org) audit windows.
type authLimits struct {
	cfg     AuthFailureLimits
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	windows map[windowKey]*auditWindow
}

type windowKey struct{ ip, org string }

type auditWindow struct {
	start      time.Time
	rows       int
	suppressed int
}

// WithAuthFailureLimits turns on the failed-authentication guards; run
// FlushAuthFailures alongside so summary rows are written.
func (i *Interceptors) WithAuthFailureLimits(cfg AuthFailureLimits) *Interceptors {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	i.authLimits = &authLimits{cfg: cfg, buckets: map[string]*rate.Limiter{}, windows: map[windowKey]*auditWindow{}}
	return i
}

// throttled reports whether ip used up its failed authentications; it does
// not consume anything (only failures do, see failed).
func (l *authLimits) throttled(ip string, now time.Time) bool {
	if l == nil || l.cfg.PerMinute <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[l.clientKey(ip)]
	return b != nil && b.TokensAt(now) < 1
}

// failed consumes one of ip's failed authentications.
func (l *authLimits) failed(ip string, now time.Time) {
	if l == nil || l.cfg.PerMinute <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.clientKey(ip)
	b := l.buckets[k]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(float64(l.cfg.PerMinute)/60), l.cfg.PerMinute)
		l.buckets[k] = b
	}
	b.AllowN(now, 1)
}

func (l *authLimits) clientKey(ip string) string {
	if _, ok := l.buckets[ip]; ok || len(l.buckets) < maxTrackedClients {
		return ip
	}
	return "*"
}

// admit decides whether a failure of ip in org gets its own audit row. A
// row opening a new window carries the count suppressed in the previous
// one if the flusher has not written it yet.
func (l *authLimits) admit(ip, org string, now time.Time) (record bool, carried int) {
	if l == nil || l.cfg.AuditRows <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := windowKey{ip, org}
	if _, ok := l.windows[k]; !ok && len(l.windows) >= maxTrackedClients {
		k.ip = "*"
	}
	w := l.windows[k]
	if w == nil || now.Sub(w.start) >= l.cfg.Window {
		if w != nil {
			carried = w.suppressed
		}
		w = &auditWindow{start: now}
		l.windows[k] = w
	}
	if w.rows < l.cfg.AuditRows {
		w.rows++
		return true, carried
	}
	w.suppressed++
	return false, carried
}

// closed removes the windows that ended before now (all with all=true) and
// returns those that suppressed failures.
func (l *authLimits) closed(now time.Time, all bool) map[windowKey]auditWindow {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[windowKey]auditWindow{}
	for k, w := range l.windows {
		if all || now.Sub(w.start) >= l.cfg.Window {
			if w.suppressed > 0 {
				out[k] = *w
			}
			delete(l.windows, k)
		}
	}
	// Buckets that refilled completely carry no state worth keeping.
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.buckets, k)
		}
	}
	return out
}

// FlushAuthFailures writes, once a window closes, one AUDIT_LOGS row per
// client IP and organization that had failures beyond the per-window rows,
// carrying their count. It returns when ctx is done; CloseAuthFailures then
// writes the windows still open.
func (i *Interceptors) FlushAuthFailures(ctx context.Context) {
	l := i.authLimits
	if l == nil {
		return
	}
	t := time.NewTicker(min(l.cfg.Window/4, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			i.writeSummaries(ctx, l.closed(i.now(), false))
		}
	}
}

// CloseAuthFailures writes the summaries of the windows still open (at
// shutdown, after the last call).
func (i *Interceptors) CloseAuthFailures(ctx context.Context) {
	if i.authLimits != nil {
		i.writeSummaries(context.WithoutCancel(ctx), i.authLimits.closed(i.now(), true))
	}
}

func (i *Interceptors) writeSummaries(ctx context.Context, ws map[windowKey]auditWindow) {
	for k, w := range ws {
		ev := auditlog.Event{
			OrgID: k.org, Category: "ACCESS", Type: "API_KEY_AUTH", Status: auditlog.StatusFailure,
			ErrorCode: "UNAUTHENTICATED", IPAddress: k.ip, Time: w.start.UTC(),
			Metadata: map[string]any{
				"aggregated": true, "suppressed_failures": w.suppressed,
				"window_start": w.start.UTC().Format(time.RFC3339), "window_seconds": int(i.authLimits.cfg.Window / time.Second),
			},
		}
		if _, err := i.rec.Record(tenant.WithOrg(ctx, k.org), ev); err != nil {
			i.log.ErrorContext(ctx, "writing failed-authentication summary failed", "err", err.Error())
		}
	}
}

// recordAuthFailure audits a failed authentication, within the per-window
// row budget; beyond it the failure is only counted.
func (i *Interceptors) recordAuthFailure(ctx context.Context, log *slog.Logger, ci *callInfo, orgID string, code codes.Code, start time.Time) {
	if orgID == "" {
		orgID = i.defaultOrg(ctx)
	}
	if orgID == "" {
		log.WarnContext(ctx, "audit event dropped: no organization exists yet")
		return
	}
	record, carried := i.authLimits.admit(ci.ip, orgID, start)
	if !record {
		return
	}
	if carried > 0 {
		ci.mu.Lock()
		ci.meta["suppressed_failures"] = carried
		ci.mu.Unlock()
	}
	i.record(ctx, log, ci, nil, orgID, "API_KEY_AUTH", "ACCESS", code, start)
}
