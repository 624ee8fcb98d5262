// Package tenant carries the caller's organization through a context so that
// the data layer can scope every query to it in one place (see ent/schema's
// OrgMixin). A context without an organization is refused by the data layer
// unless it is explicitly marked as a system context.
package tenant

import "context"

type orgKey struct{}
type systemKey struct{}

// WithOrg returns a context whose queries are scoped to orgID.
func WithOrg(ctx context.Context, orgID string) context.Context {
	return context.WithValue(ctx, orgKey{}, orgID)
}

// Org returns the organization the context is scoped to.
func Org(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(orgKey{}).(string)
	return id, ok && id != ""
}

// System marks a context as acting across organizations: authentication
// (looking a key up by prefix), migrations, the scheduler. Use sparingly.
func System(ctx context.Context) context.Context {
	return context.WithValue(ctx, systemKey{}, true)
}

// IsSystem reports whether ctx was marked with System and carries no org.
func IsSystem(ctx context.Context) bool {
	v, _ := ctx.Value(systemKey{}).(bool)
	return v
}
