package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/apikey"
	"github.com/auditexport/auditexport/ent/connectiongrant"
	"github.com/auditexport/auditexport/ent/user"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/accounts"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/signing"
)

var _ pb.AccountServiceServer = (*AccountService)(nil)

// AccountService implements pb.AccountServiceServer.
type AccountService struct {
	pb.UnimplementedAccountServiceServer
	db  *ent.Client
	log *slog.Logger
	now func() time.Time
	// signing: the organizations' manifest signing keys (nil: the
	// signing-key RPCs answer FAILED_PRECONDITION).
	signing *signing.Keys
}

// WithSigningKeys serves ListSigningKeys and RotateSigningKey from k.
func (s *AccountService) WithSigningKeys(k *signing.Keys) *AccountService {
	s.signing = k
	return s
}

// NewAccountService builds the service.
func NewAccountService(db *ent.Client, log *slog.Logger) *AccountService {
	return &AccountService{db: db, log: log, now: time.Now}
}

func (s *AccountService) userPB(ctx context.Context, u *ent.User) (*pb.User, error) {
	grants, err := s.db.ConnectionGrant.Query().Where(connectiongrant.UserID(u.ID)).All(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "load grants", err)
	}
	out := &pb.User{
		Id: u.ID, Email: u.Email, Active: u.Active, OrganizationId: u.OrgID,
		AccountType: pb.AccountType(enumProto(pb.AccountType_value, "ACCOUNT_TYPE_", string(u.AccountType))),
		CreateTime:  ts(u.CreateTime), UpdateTime: ts(u.UpdateTime),
	}
	for _, g := range grants {
		out.ConnectionGrants = append(out.ConnectionGrants, g.ConnectionID)
	}
	return out, nil
}

func (s *AccountService) getUser(ctx context.Context, field, id string) (*ent.User, error) {
	var v violations
	idField(&v, field, id)
	if err := v.err(); err != nil {
		return nil, err
	}
	auditObject(ctx, "USER", id)
	u, err := s.db.User.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, notFound("user", id)
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "get user", err)
	}
	return u, nil
}

// GetCurrentUser implements pb.AccountServiceServer.
func (s *AccountService) GetCurrentUser(ctx context.Context, _ *pb.GetCurrentUserRequest) (*pb.GetCurrentUserResponse, error) {
	u, err := s.getUser(ctx, "id", auth.FromContext(ctx).UserID)
	if err != nil {
		return nil, err
	}
	out, err := s.userPB(ctx, u)
	if err != nil {
		return nil, err
	}
	return &pb.GetCurrentUserResponse{User: out}, nil
}

// CreateUser implements pb.AccountServiceServer.
func (s *AccountService) CreateUser(ctx context.Context, req *pb.CreateUserRequest) (*pb.CreateUserResponse, error) {
	if err := requireAdmin(ctx, "create users"); err != nil {
		return nil, err
	}
	var v violations
	in := req.GetUser()
	if in == nil {
		v.add("user", "is required")
		return nil, v.err()
	}
	email(&v, "user.email", in.GetEmail())
	accountType := enumField(&v, "user.account_type", in.GetAccountType(), "ACCOUNT_TYPE_", true)
	if err := v.err(); err != nil {
		return nil, err
	}
	u, err := accounts.CreateUser(ctx, s.db, in.GetEmail(), accountType)
	if err != nil {
		return nil, commandError(ctx, s.log, "create user", err)
	}
	auditObject(ctx, "USER", u.ID)
	auditMeta(ctx, "account_type", string(u.AccountType))
	out, err := s.userPB(ctx, u)
	if err != nil {
		return nil, err
	}
	return &pb.CreateUserResponse{User: out}, nil
}

// GetUser implements pb.AccountServiceServer.
func (s *AccountService) GetUser(ctx context.Context, req *pb.GetUserRequest) (*pb.GetUserResponse, error) {
	p := auth.FromContext(ctx)
	if !p.IsAdmin() && req.GetId() != p.UserID {
		return nil, permissionDenied("only an ADMIN may read other users")
	}
	u, err := s.getUser(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	out, err := s.userPB(ctx, u)
	if err != nil {
		return nil, err
	}
	return &pb.GetUserResponse{User: out}, nil
}

// ListUsers implements pb.AccountServiceServer.
func (s *AccountService) ListUsers(ctx context.Context, req *pb.ListUsersRequest) (*pb.ListUsersResponse, error) {
	if err := requireAdmin(ctx, "list users"); err != nil {
		return nil, err
	}
	var v violations
	size := pageSize(&v, req.GetPageSize())
	after := decodeToken(&v, "usr", req.GetPageToken())
	if err := v.err(); err != nil {
		return nil, err
	}
	q := s.db.User.Query().Order(ent.Asc(user.FieldID)).Limit(size + 1)
	if after != "" {
		q = q.Where(user.IDGT(after))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list users", err)
	}
	resp := &pb.ListUsersResponse{}
	rows, resp.NextPageToken = page(rows, size, "usr", func(r *ent.User) string { return r.ID })
	for _, u := range rows {
		out, err := s.userPB(ctx, u)
		if err != nil {
			return nil, err
		}
		resp.Users = append(resp.Users, out)
	}
	return resp, nil
}

// UpdateUser implements pb.AccountServiceServer.
func (s *AccountService) UpdateUser(ctx context.Context, req *pb.UpdateUserRequest) (*pb.UpdateUserResponse, error) {
	if err := requireAdmin(ctx, "update users"); err != nil {
		return nil, err
	}
	in := req.GetUser()
	if in == nil {
		return nil, invalidField("user", "is required")
	}
	cur, err := s.getUser(ctx, "user.id", in.GetId())
	if err != nil {
		return nil, err
	}
	if err := revision.Check("user", sentTime(in.GetUpdateTime()), cur.UpdateTime); err != nil {
		return nil, commandError(ctx, s.log, "update user", err)
	}
	var v violations
	paths := maskPaths(&v, req.GetUpdateMask(), []string{"email", "account_type", "active"}, []string{"id", "organization_id", "create_time", "update_time", "connection_grants"})
	var ch accounts.UserChange
	if paths["email"] {
		email(&v, "user.email", in.GetEmail())
		ch.Email = &in.Email
	}
	var accountType string
	if paths["account_type"] {
		accountType = enumField(&v, "user.account_type", in.GetAccountType(), "ACCOUNT_TYPE_", true)
		ch.AccountType = &accountType
	}
	if paths["active"] {
		ch.Active = &in.Active
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if paths["account_type"] {
		auditCategory(ctx, "ACCOUNT_TYPE")
		auditMeta(ctx, "account_type_from", string(cur.AccountType))
		auditMeta(ctx, "account_type_to", accountType)
	}
	u, paused, err := accounts.UpdateUser(ctx, s.db, cur, auth.FromContext(ctx).UserID, ch)
	if err != nil {
		return nil, commandError(ctx, s.log, "update user", err)
	}
	auditMeta(ctx, "update_mask", req.GetUpdateMask().GetPaths())
	auditMeta(ctx, "paused_schedule_ids", paused)
	out, err := s.userPB(ctx, u)
	if err != nil {
		return nil, err
	}
	return &pb.UpdateUserResponse{User: out}, nil
}

func (s *AccountService) grantArgs(ctx context.Context, connID, userID string) (*ent.User, error) {
	if err := requireAdmin(ctx, "grant or revoke connection access"); err != nil {
		return nil, err
	}
	var v violations
	idField(&v, "connection_id", connID)
	idField(&v, "user_id", userID)
	if err := v.err(); err != nil {
		return nil, err
	}
	if connID != auditlog.ConnectionID {
		return nil, notFound("connection", connID)
	}
	return s.getUser(ctx, "user_id", userID)
}

// GrantConnectionAccess implements pb.AccountServiceServer.
func (s *AccountService) GrantConnectionAccess(ctx context.Context, req *pb.GrantConnectionAccessRequest) (*pb.GrantConnectionAccessResponse, error) {
	u, err := s.grantArgs(ctx, req.GetConnectionId(), req.GetUserId())
	if err != nil {
		return nil, err
	}
	if err := accounts.Grant(ctx, s.db, u.ID, req.GetConnectionId()); err != nil {
		return nil, commandError(ctx, s.log, "grant", err)
	}
	auditMeta(ctx, "connection_id", req.GetConnectionId())
	out, err := s.userPB(ctx, u)
	if err != nil {
		return nil, err
	}
	return &pb.GrantConnectionAccessResponse{User: out}, nil
}

// RevokeConnectionAccess implements pb.AccountServiceServer.
func (s *AccountService) RevokeConnectionAccess(ctx context.Context, req *pb.RevokeConnectionAccessRequest) (*pb.RevokeConnectionAccessResponse, error) {
	u, err := s.grantArgs(ctx, req.GetConnectionId(), req.GetUserId())
	if err != nil {
		return nil, err
	}
	paused, err := accounts.Revoke(ctx, s.db, u.ID, req.GetConnectionId())
	if err != nil {
		return nil, commandError(ctx, s.log, "revoke", err)
	}
	auditMeta(ctx, "connection_id", req.GetConnectionId())
	auditMeta(ctx, "paused_schedule_ids", paused)
	out, err := s.userPB(ctx, u)
	if err != nil {
		return nil, err
	}
	return &pb.RevokeConnectionAccessResponse{User: out}, nil
}

func apiKeyPB(k *ent.ApiKey) *pb.ApiKey {
	return &pb.ApiKey{Id: k.ID, Name: k.Name, Prefix: k.Prefix, UserId: k.UserID, CreateTime: ts(k.CreateTime), RevokeTime: tsPtr(k.RevokeTime), LastUsedTime: tsPtr(k.LastUsedTime)}
}

// keyOwner resolves the user whose keys a call is about (default: caller).
func (s *AccountService) keyOwner(ctx context.Context, userID string) (*ent.User, error) {
	p := auth.FromContext(ctx)
	if userID == "" {
		userID = p.UserID
	}
	if userID != p.UserID && !p.IsAdmin() {
		return nil, permissionDenied("only an ADMIN may manage other users' API keys")
	}
	return s.getUser(ctx, "user_id", userID)
}

// CreateApiKey implements pb.AccountServiceServer.
func (s *AccountService) CreateApiKey(ctx context.Context, req *pb.CreateApiKeyRequest) (*pb.CreateApiKeyResponse, error) {
	var v violations
	text(&v, "name", req.GetName(), false, 128)
	if err := v.err(); err != nil {
		return nil, err
	}
	u, err := s.keyOwner(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	k, secret, err := accounts.CreateAPIKey(ctx, s.db, u, req.GetName())
	if err != nil {
		return nil, commandError(ctx, s.log, "create api key", err)
	}
	auditObject(ctx, "API_KEY", k.ID)
	auditMeta(ctx, "key_user_id", u.ID)
	return &pb.CreateApiKeyResponse{ApiKey: apiKeyPB(k), Secret: secret}, nil
}

// ListApiKeys implements pb.AccountServiceServer.
func (s *AccountService) ListApiKeys(ctx context.Context, req *pb.ListApiKeysRequest) (*pb.ListApiKeysResponse, error) {
	var v violations
	size := pageSize(&v, req.GetPageSize())
	after := decodeToken(&v, "key", req.GetPageToken())
	if err := v.err(); err != nil {
		return nil, err
	}
	u, err := s.keyOwner(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	q := s.db.ApiKey.Query().Where(apikey.UserID(u.ID)).Order(ent.Asc(apikey.FieldID)).Limit(size + 1)
	if after != "" {
		q = q.Where(apikey.IDGT(after))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list api keys", err)
	}
	resp := &pb.ListApiKeysResponse{}
	rows, resp.NextPageToken = page(rows, size, "key", func(r *ent.ApiKey) string { return r.ID })
	for _, k := range rows {
		resp.ApiKeys = append(resp.ApiKeys, apiKeyPB(k))
	}
	return resp, nil
}

// RevokeApiKey implements pb.AccountServiceServer.
func (s *AccountService) RevokeApiKey(ctx context.Context, req *pb.RevokeApiKeyRequest) (*pb.RevokeApiKeyResponse, error) {
	var v violations
	idField(&v, "id", req.GetId())
	if err := v.err(); err != nil {
		return nil, err
	}
	auditObject(ctx, "API_KEY", req.GetId())
	k, err := s.db.ApiKey.Get(ctx, req.GetId())
	if ent.IsNotFound(err) {
		return nil, notFound("api key", req.GetId())
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "get api key", err)
	}
	p := auth.FromContext(ctx)
	if k.UserID != p.UserID && !p.IsAdmin() {
		return nil, permissionDenied("only an ADMIN may revoke other users' API keys")
	}
	if k, err = accounts.RevokeAPIKey(ctx, s.db, k, s.now()); err != nil {
		return nil, commandError(ctx, s.log, "revoke api key", err)
	}
	return &pb.RevokeApiKeyResponse{ApiKey: apiKeyPB(k)}, nil
}
