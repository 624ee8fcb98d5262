// Package reqid carries an RPC's request id in its context, so that what
// the handlers call (internal/...) can name the request in its logs.
package reqid

import "context"

type key struct{}

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context { return context.WithValue(ctx, key{}, id) }

// From is ctx's request id, "" if none (a scheduled run, a test).
func From(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}
