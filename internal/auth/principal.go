package auth

import "context"

// Account types.
const (
	Admin   = "ADMIN"
	Creator = "CREATOR"
	Viewer  = "VIEWER"
)

// Principal is the authenticated caller.
type Principal struct {
	OrgID       string
	UserID      string
	Email       string
	AccountType string
	APIKeyID    string
	// Connection ids the user was granted.
	Grants map[string]bool
}

// IsAdmin reports whether the caller is an ADMIN.
func (p *Principal) IsAdmin() bool { return p.AccountType == Admin }

// CanAccessConnection: ADMIN always, others when granted.
func (p *Principal) CanAccessConnection(id string) bool {
	return p.IsAdmin() || p.Grants[id]
}

// CanCreate: ADMIN and CREATOR make workbooks and schedules; VIEWER reads.
func (p *Principal) CanCreate() bool { return p.AccountType == Admin || p.AccountType == Creator }

// OwnsOrAdmin reports whether the caller may manage an object owned by ownerID.
func (p *Principal) OwnsOrAdmin(ownerID string) bool { return p.IsAdmin() || p.UserID == ownerID }

type principalKey struct{}

// WithPrincipal stores p in ctx.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
