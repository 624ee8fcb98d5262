package schema

import (
	"context"
	"errors"
	"fmt"
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect/sql"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"entgo.io/ent/schema/mixin"

	"github.com/auditexport/auditexport/ent/intercept"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/tenant"
)

// ErrNoTenant is returned when a tenant-scoped query runs without an
// organization in its context (and not as a system context).
var ErrNoTenant = errors.New("data access without an organization in context")

// OrgMixin scopes an entity to an organization. This is the single place where
// tenancy is enforced: every query gets `org_id = <caller's org>`, every
// update/delete is restricted the same way, and creates get org_id set from
// the context. Handlers never filter by org themselves.
type OrgMixin struct {
	mixin.Schema
}

// Fields adds org_id.
func (OrgMixin) Fields() []ent.Field {
	return []ent.Field{
		field.String("org_id").Immutable().NotEmpty(),
	}
}

// Indexes indexes org_id.
func (OrgMixin) Indexes() []ent.Index {
	return []ent.Index{index.Fields("org_id")}
}

type wherer interface {
	WhereP(...func(*sql.Selector))
}

func orgFilter(ctx context.Context) (func(*sql.Selector), bool, error) {
	if org, ok := tenant.Org(ctx); ok {
		return sql.FieldEQ("org_id", org), true, nil
	}
	if tenant.IsSystem(ctx) {
		return nil, false, nil
	}
	return nil, false, ErrNoTenant
}

// Interceptors scope every query.
func (OrgMixin) Interceptors() []ent.Interceptor {
	return []ent.Interceptor{
		intercept.TraverseFunc(func(ctx context.Context, q intercept.Query) error {
			p, ok, err := orgFilter(ctx)
			if err != nil || !ok {
				return err
			}
			q.WhereP(p)
			return nil
		}),
	}
}

// Hooks scope every mutation.
func (OrgMixin) Hooks() []ent.Hook {
	return []ent.Hook{
		func(next ent.Mutator) ent.Mutator {
			return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
				org, ok := tenant.Org(ctx)
				if !ok && !tenant.IsSystem(ctx) {
					return nil, ErrNoTenant
				}
				if !ok {
					return next.Mutate(ctx, m)
				}
				if m.Op().Is(ent.OpCreate) {
					if v, set := m.Field("org_id"); set && v != org {
						return nil, fmt.Errorf("create in org %v from a context of org %s", v, org)
					}
					if err := m.SetField("org_id", org); err != nil {
						return nil, err
					}
					return next.Mutate(ctx, m)
				}
				w, isW := m.(wherer)
				if !isW {
					return nil, fmt.Errorf("mutation %T cannot be scoped to an organization", m)
				}
				w.WhereP(sql.FieldEQ("org_id", org))
				return next.Mutate(ctx, m)
			})
		},
	}
}

// TimeMixin adds create_time and update_time.
type TimeMixin struct {
	mixin.Schema
}

// Fields adds the timestamps.
func (TimeMixin) Fields() []ent.Field {
	return []ent.Field{
		field.Time("create_time").Default(now).Immutable(),
		field.Time("update_time").Default(now),
	}
}

// updateTimer is a mutation of an entity with update_time.
type updateTimer interface {
	UpdateTime() (time.Time, bool)
	SetUpdateTime(time.Time)
}

// Hooks set update_time on every update but bookkeeping ones
// (revision.Bookkeeping): update_time is the revision clients send back
// to detect a concurrent change, so it moves when something they can see
// changes, not when the scheduler records a next run time.
func (TimeMixin) Hooks() []ent.Hook {
	return []ent.Hook{
		func(next ent.Mutator) ent.Mutator {
			return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
				if m.Op().Is(ent.OpUpdate|ent.OpUpdateOne) && !revision.IsBookkeeping(ctx) {
					if u, ok := m.(updateTimer); ok {
						if _, set := u.UpdateTime(); !set {
							u.SetUpdateTime(now())
						}
					}
				}
				return next.Mutate(ctx, m)
			})
		},
	}
}

func now() time.Time { return time.Now().UTC() }
