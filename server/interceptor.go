package server

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/organization"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/clientip"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/metrics"
	"github.com/auditexport/auditexport/internal/reqid"
	"github.com/auditexport/auditexport/internal/tenant"
)

// servicePrefix marks our RPCs; health and reflection are open and unaudited.
const servicePrefix = "/auditexport.v1."

// Interceptors authenticate, scope to the caller's org, record one AUDIT_LOGS
// row per call, log, and normalise errors.
type Interceptors struct {
	db  *ent.Client
	rec *auditlog.Recorder
	log *slog.Logger
	// gatewayNetwork is the network name of the in-process gateway
	// connection: only its x-forwarded-for is trusted.
	gatewayNetwork string
	now            func() time.Time
	metrics        *metrics.Metrics
	trusted        clientip.Trusted
	authLimits     *authLimits
}

// NewInterceptors builds the interceptors.
func NewInterceptors(db *ent.Client, rec *auditlog.Recorder, log *slog.Logger, gatewayNetwork string) *Interceptors {
	return &Interceptors{db: db, rec: rec, log: log, gatewayNetwork: gatewayNetwork, now: time.Now}
}

// ClientIPHeader is set by the REST handler (overwriting whatever the
// client sent) to the client address it resolved; the gateway forwards it
// as ClientIPMetadata, and only over the in-process connection is it read.
const (
	ClientIPHeader   = "X-Auditexport-Client-Ip"
	ClientIPMetadata = "x-auditexport-client-ip"
)

// WithTrustedProxies believes x-forwarded-for on gRPC connections from these
// proxies only (none by default: the socket peer is the client).
func (i *Interceptors) WithTrustedProxies(t clientip.Trusted) *Interceptors {
	i.trusted = t
	return i
}

// WithMetrics records each RPC's count and duration in m (nil: none).
func (i *Interceptors) WithMetrics(m *metrics.Metrics) *Interceptors {
	i.metrics = m
	return i
}

func requestIDFrom(ctx context.Context) string { return reqid.From(ctx) }

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// callInfo is what the audit row needs about a call besides its outcome.
type callInfo struct {
	method    string // short RPC name, e.g. CreateSchedule
	requestID string
	ip        string
	userAgent string
	mu        sync.Mutex
	objType   string
	objID     string
	category  string
	meta      map[string]any
}

type callInfoKey struct{}

// auditObject records the object a call acted on (for AUDIT_LOGS).
func auditObject(ctx context.Context, typ, id string) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.mu.Lock()
		ci.objType, ci.objID = typ, id
		ci.mu.Unlock()
	}
}

// auditCategory overrides the call's AUDIT_LOGS event_category.
func auditCategory(ctx context.Context, cat string) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.mu.Lock()
		ci.category = cat
		ci.mu.Unlock()
	}
}

// auditMeta adds non-secret metadata to the call's AUDIT_LOGS row.
func auditMeta(ctx context.Context, key string, v any) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.mu.Lock()
		ci.meta[key] = v
		ci.mu.Unlock()
	}
}

// Unary is the unary server interceptor.
func (i *Interceptors) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(ctx, req)
	}
	bad := undecodable(req)
	var resp any
	err := i.around(ctx, info.FullMethod, func(ctx context.Context) error {
		if bad != nil {
			return bad
		}
		if err := checkRequest(req); err != nil {
			return err
		}
		var herr error
		resp, herr = handler(ctx, req)
		return herr
	})
	return resp, err
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// RecvMsg checks each request message as Unary does.
func (w *wrappedStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := undecodable(m); err != nil {
		return err
	}
	return checkRequest(m)
}

// Stream is the streaming server interceptor.
func (i *Interceptors) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(srv, ss)
	}
	return i.around(ss.Context(), info.FullMethod, func(ctx context.Context) error {
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	})
}

func (i *Interceptors) around(ctx context.Context, fullMethod string, call func(context.Context) error) (err error) {
	start := i.now()
	md, _ := metadata.FromIncomingContext(ctx)
	ci := &callInfo{
		method:    fullMethod[strings.LastIndex(fullMethod, "/")+1:],
		requestID: firstMD(md, "x-request-id"),
		userAgent: userAgent(md),
		ip:        i.clientIP(ctx, md),
		meta:      map[string]any{},
	}
	if !requestIDPattern.MatchString(ci.requestID) {
		ci.requestID = ids.New("req_")
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", ci.requestID))
	ctx = reqid.With(ctx, ci.requestID)
	ctx = context.WithValue(ctx, callInfoKey{}, ci)
	log := i.log.With("request_id", ci.requestID, "method", ci.method)

	defer func() {
		if r := recover(); r != nil {
			log.ErrorContext(ctx, "panic in handler", "panic", r)
			err = newStatus(codes.Internal, "INTERNAL", "internal error (request id "+ci.requestID+")")
		}
		err = ensureErrorInfo(err)
	}()

	var p *auth.Principal
	var orgForFailure string
	var aerr error
	if i.authLimits.throttled(ci.ip, start) {
		// Checked before the key lookup: a flood of bad keys costs no
		// database work beyond its (aggregated) audit rows.
		aerr = resourceExhausted("AUTH_FAILURE_RATE_LIMITED", "too many failed authentications from this address; try again later", authRetryAfter)
	} else if p, orgForFailure, aerr = i.authenticate(ctx, md); status.Code(aerr) == codes.Unauthenticated {
		i.authLimits.failed(ci.ip, start)
	}
	if aerr != nil {
		code := status.Code(aerr)
		i.recordAuthFailure(ctx, log, ci, orgForFailure, code, start)
		i.metrics.ObserveRPC(ci.method, codeName(code), time.Since(start))
		log.InfoContext(ctx, "rpc", "code", codeName(code), "duration_ms", time.Since(start).Milliseconds())
		return aerr
	}
	ctx = auth.WithPrincipal(ctx, p)
	ctx = tenant.WithOrg(ctx, p.OrgID)
	err = call(ctx)
	code := status.Code(err)
	if _, isStatus := status.FromError(err); !isStatus {
		err = internalError(ctx, log, ci.method, err)
		code = codes.Internal
	}
	i.record(ctx, log, ci, p, p.OrgID, eventType(ci.method), eventCategory(ci.method), code, start)
	i.metrics.ObserveRPC(ci.method, codeName(code), time.Since(start))
	log.InfoContext(ctx, "rpc", "code", codeName(code), "user_id", p.UserID, "duration_ms", time.Since(start).Milliseconds())
	return err
}

func (i *Interceptors) record(ctx context.Context, log *slog.Logger, ci *callInfo, p *auth.Principal, orgID, typ, cat string, code codes.Code, start time.Time) {
	if orgID == "" {
		orgID = i.defaultOrg(ctx)
		if orgID == "" {
			log.WarnContext(ctx, "audit event dropped: no organization exists yet")
			return
		}
	}
	ci.mu.Lock()
	meta := make(map[string]any, len(ci.meta)+2)
	for k, v := range ci.meta {
		meta[k] = v
	}
	objType, objID := ci.objType, ci.objID
	if ci.category != "" && p != nil {
		cat = ci.category
	}
	ci.mu.Unlock()
	meta["method"] = ci.method
	ev := auditlog.Event{
		OrgID: orgID, Category: cat, Type: typ, Status: "SUCCESS",
		ObjectType: objType, ObjectID: objID, RequestID: ci.requestID,
		IPAddress: ci.ip, UserAgent: ci.userAgent, Metadata: meta, Time: start.UTC(),
	}
	if code != codes.OK {
		ev.Status, ev.ErrorCode = "FAILURE", codeName(code)
	}
	if p != nil {
		ev.UserID, ev.UserEmail, ev.AccountType = p.UserID, p.Email, p.AccountType
	}
	// The audit row must be written even if the client went away.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := i.rec.Record(wctx, ev); err != nil {
		log.ErrorContext(ctx, "writing audit event failed", "err", err.Error())
	}
}

// defaultOrg is where audit rows of unidentifiable callers go.
func (i *Interceptors) defaultOrg(ctx context.Context) string {
	sctx := tenant.System(context.WithoutCancel(ctx))
	o, err := i.db.Organization.Query().Where(organization.IsDefault(true)).Only(sctx)
	if err != nil {
		return ""
	}
	return o.ID
}

// authenticate returns the caller, or an UNAUTHENTICATED error and the org
// the failure should be recorded in ("" when no key row matched).
func (i *Interceptors) authenticate(ctx context.Context, md metadata.MD) (*auth.Principal, string, error) {
	authz := firstMD(md, "authorization")
	if authz == "" {
		return nil, "", unauthenticated("missing authorization: send `authorization: Bearer <api key>`")
	}
	scheme, key, ok := strings.Cut(authz, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return nil, "", unauthenticated("authorization must be `Bearer <api key>`")
	}
	prefix, err := auth.ParseAPIKey(strings.TrimSpace(key))
	if err != nil {
		return nil, "", unauthenticated("invalid API key")
	}
	sctx := tenant.System(ctx)
	k, err := i.lookupKey(sctx, prefix)
	if err != nil {
		if !errors.Is(err, sql.ErrNoRows) {
			i.log.ErrorContext(ctx, "api key lookup failed", "err", err.Error(), "request_id", requestIDFrom(ctx))
			return nil, "", status.Error(codes.Unavailable, "authentication temporarily unavailable")
		}
		return nil, "", unauthenticated("invalid API key")
	}
	switch {
	case !auth.Verify(strings.TrimSpace(key), k.SecretHash):
		return nil, k.OrgID, unauthenticated("invalid API key")
	case k.RevokeTime != nil:
		return nil, k.OrgID, unauthenticated("API key revoked")
	case k.UserID == "" || !k.UserActive:
		return nil, k.OrgID, unauthenticated("user is deactivated")
	}
	p := &auth.Principal{OrgID: k.OrgID, UserID: k.UserID, Email: k.Email, AccountType: k.AccountType, APIKeyID: k.ID, Grants: map[string]bool{}}
	for _, g := range k.Grants {
		p.Grants[g] = true
	}
	// Remember last use, at most once a minute per key, so reads stay reads.
	if now := i.now(); k.LastUsedTime == nil || now.Sub(*k.LastUsedTime) > time.Minute {
		if err := i.db.ApiKey.UpdateOneID(k.ID).SetLastUsedTime(now.UTC()).Exec(sctx); err != nil {
			i.log.WarnContext(ctx, "updating api key last use failed", "err", err.Error())
		}
	}
	return p, k.OrgID, nil
}

// keyRow is an API key with its user and the user's connection grants.
type keyRow struct {
	ID, OrgID                  string
	SecretHash                 []byte
	RevokeTime, LastUsedTime   *time.Time
	UserID, Email, AccountType string
	UserActive                 bool
	Grants                     []string
}

// keyQuery reads a key, its user and the user's grants in one round trip
// (one row per grant, at least one): every authenticated call makes it.
const keyQuery = `SELECT k.id, k.org_id, k.secret_hash, k.revoke_time, k.last_used_time,
	COALESCE(u.id, ''), COALESCE(u.email, ''), COALESCE(u.account_type, ''), COALESCE(u.active, false), COALESCE(g.connection_id, '')
FROM api_keys k LEFT JOIN users u ON u.id = k.user_id LEFT JOIN connection_grants g ON g.user_id = u.id
WHERE k.prefix = $1`

// lookupKey returns the key of prefix (sql.ErrNoRows if there is none).
func (i *Interceptors) lookupKey(ctx context.Context, prefix string) (*keyRow, error) {
	rows, err := i.db.QueryContext(ctx, keyQuery, prefix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var k *keyRow
	for rows.Next() {
		var r keyRow
		var revoke, used sql.NullTime
		var grant string
		if err := rows.Scan(&r.ID, &r.OrgID, &r.SecretHash, &revoke, &used, &r.UserID, &r.Email, &r.AccountType, &r.UserActive, &grant); err != nil {
			return nil, err
		}
		if k == nil {
			if revoke.Valid {
				r.RevokeTime = &revoke.Time
			}
			if used.Valid {
				r.LastUsedTime = &used.Time
			}
			k = &r
		}
		if grant != "" {
			k.Grants = append(k.Grants, grant)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if k == nil {
		return nil, sql.ErrNoRows
	}
	return k, nil
}

func firstMD(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func userAgent(md metadata.MD) string {
	if ua := firstMD(md, "grpcgateway-user-agent"); ua != "" {
		return ua
	}
	return firstMD(md, "user-agent")
}

// clientIP is the address recorded in AUDIT_LOGS. REST calls arrive over
// the in-process gateway, whose HTTP handler resolved the address (see
// ClientIPHeader); gRPC calls are the socket peer, or what trusted proxies
// put in x-forwarded-for when the peer is one of them.
func (i *Interceptors) clientIP(ctx context.Context, md metadata.MD) string {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return ""
	}
	if pr.Addr.Network() == i.gatewayNetwork {
		if v := md.Get(ClientIPMetadata); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	return i.trusted.Resolve(pr.Addr.String(), md.Get("x-forwarded-for"))
}

// eventType is the RPC name in UPPER_SNAKE: CreateSchedule -> CREATE_SCHEDULE.
func eventType(method string) string {
	var b strings.Builder
	for idx, r := range method {
		if unicode.IsUpper(r) && idx > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// eventCategory buckets RPCs into the AUDIT_LOGS categories of API.md.
func eventCategory(method string) string {
	switch method {
	case "ListConnections", "ExploreTable", "GrantConnectionAccess", "RevokeConnectionAccess":
		return "CONNECTION"
	case "CreateApiKey", "ListApiKeys", "RevokeApiKey":
		return "PUBLIC_API"
	case "GetCurrentUser", "CreateUser", "GetUser", "ListUsers", "UpdateUser":
		return "USER_ACCOUNT"
	}
	switch {
	case strings.Contains(method, "StorageIntegration"):
		return "INTEGRATIONS"
	case strings.Contains(method, "Schedule"), strings.Contains(method, "Export"), method == "SendNow":
		return "EXPORTS"
	}
	return "OBJECT_INTERACTION"
}
