package main

import (
	"context"

	"google.golang.org/protobuf/proto"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type usersCmd struct {
	Me     userMeCmd     `cmd:"" help:"Who am I (the user of the API key)."`
	Create userCreateCmd `cmd:"" help:"Create a user (ADMIN)."`
	List   userListCmd   `cmd:"" aliases:"ls" help:"List users."`
	Get    userGetCmd    `cmd:"" help:"Show one user."`
	Update userUpdateCmd `cmd:"" help:"Change e-mail, account type or active; only the flags given are changed (ADMIN)."`
	Grant  userGrantCmd  `cmd:"" help:"Grant a user access to a connection (ADMIN)."`
	Revoke userRevokeCmd `cmd:"" help:"Revoke a user's access to a connection (ADMIN)."`
}

type userMeCmd struct{}

func (userMeCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
	})
}

type userCreateCmd struct {
	Email       string `name:"email" required:"" help:"E-mail address."`
	AccountType string `name:"account-type" required:"" help:"admin, creator or viewer."`
}

func (c *userCreateCmd) Run(e *env) error {
	u := &pb.User{Email: c.Email}
	if err := enumFlag("account-type", c.AccountType, pb.AccountType(0).Descriptor(), &u.AccountType); err != nil {
		return err
	}
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.CreateUser(ctx, &pb.CreateUserRequest{User: u})
	})
}

type userListCmd struct{ listFlags }

func (c *userListCmd) Run(e *env) error {
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		return cl.Accounts.ListUsers(ctx, &pb.ListUsersRequest{PageSize: c.PageSize, PageToken: token})
	})
}

type userGetCmd struct {
	ID string `arg:"" help:"User id (usr_…)."`
}

func (c *userGetCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.GetUser(ctx, &pb.GetUserRequest{Id: c.ID})
	})
}

type userUpdateCmd struct {
	ID          string `arg:"" help:"User id (usr_…)."`
	Email       string `name:"email" help:"New e-mail address."`
	AccountType string `name:"account-type" help:"admin, creator or viewer."`
	Active      bool   `name:"active" negatable:"" help:"--no-active deactivates the user (their keys stop working)."`
}

func (c *userUpdateCmd) Run(e *env) error {
	u := &pb.User{Id: c.ID}
	setIfGiven(e, "email", &u.Email, c.Email)
	setIfGiven(e, "active", &u.Active, c.Active)
	if err := enumFlag("account-type", c.AccountType, pb.AccountType(0).Descriptor(), &u.AccountType); err != nil {
		return err
	}
	mask := e.updateMask(nil, maskField{"email", "email"}, maskField{"account-type", "account_type"}, maskField{"active", "active"})
	if len(mask.GetPaths()) == 0 {
		return usagef("nothing to update: give --email, --account-type or --active/--no-active")
	}
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.UpdateUser(ctx, &pb.UpdateUserRequest{User: u, UpdateMask: mask})
	})
}

type connAccessFlags struct {
	User       string `arg:"" help:"User id (usr_…)."`
	Connection string `name:"connection" default:"con_audit_logs" help:"Connection id."`
}

type userGrantCmd struct{ connAccessFlags }

func (c *userGrantCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.GrantConnectionAccess(ctx, &pb.GrantConnectionAccessRequest{ConnectionId: c.Connection, UserId: c.User})
	})
}

type userRevokeCmd struct{ connAccessFlags }

func (c *userRevokeCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.RevokeConnectionAccess(ctx, &pb.RevokeConnectionAccessRequest{ConnectionId: c.Connection, UserId: c.User})
	})
}

type keysCmd struct {
	Create keyCreateCmd `cmd:"" help:"Create an API key; its secret is shown once."`
	List   keyListCmd   `cmd:"" aliases:"ls" help:"List API keys (prefixes only; secrets are never stored)."`
	Revoke keyRevokeCmd `cmd:"" help:"Revoke an API key."`
}

type keyCreateCmd struct {
	User string `name:"user" help:"User id (usr_…) the key acts as (default: yourself)."`
	Name string `name:"name" required:"" help:"Key name (what it is for)."`
}

func (c *keyCreateCmd) Run(e *env) error {
	err := e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.CreateApiKey(ctx, &pb.CreateApiKeyRequest{UserId: c.User, Name: c.Name})
	})
	if err == nil && e.out.kind == outTable {
		e.notef("The secret is shown only this once: store it now.")
	}
	return err
}

type keyListCmd struct {
	listFlags
	User string `name:"user" help:"Only keys of this user (usr_…)."`
}

func (c *keyListCmd) Run(e *env) error {
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		return cl.Accounts.ListApiKeys(ctx, &pb.ListApiKeysRequest{PageSize: c.PageSize, PageToken: token, UserId: c.User})
	})
}

type keyRevokeCmd struct {
	ID string `arg:"" help:"API key id (key_…)."`
}

func (c *keyRevokeCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.RevokeApiKey(ctx, &pb.RevokeApiKeyRequest{Id: c.ID})
	})
}
