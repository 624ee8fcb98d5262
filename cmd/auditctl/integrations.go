package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type integrationsCmd struct {
	Create      intCreateCmd      `cmd:"" help:"Create a storage integration (ADMIN)."`
	List        intListCmd        `cmd:"" aliases:"ls" help:"List storage integrations."`
	Get         intGetCmd         `cmd:"" help:"Show one storage integration."`
	Update      intUpdateCmd      `cmd:"" help:"Change an integration; only the flags given are changed (ADMIN)."`
	Delete      intDeleteCmd      `cmd:"" aliases:"rm" help:"Delete an integration; its schedules are paused unless --delete-linked-schedules (ADMIN)."`
	Test        intTestCmd        `cmd:"" help:"Write, read back and delete a probe object under the destination (ADMIN)."`
	Credentials intCredentialsCmd `cmd:"" aliases:"creds" help:"Show the identity to grant access to: external ID, IAM principal, service account… (ADMIN)."`
}

// credFlags choose the integration's credentials. Secret parts are read
// from files or the environment, never from a flag value.
type credFlags struct {
	AccessKeyID         string `name:"access-key-id" group:"credentials" help:"S3: access key id (with --secret-access-key-file or env AUDITEXPORT_SECRET_ACCESS_KEY)."`
	SecretAccessKeyFile string `name:"secret-access-key-file" group:"credentials" placeholder:"FILE" help:"S3: file holding the secret access key (- = stdin)."`
	RoleARN             string `name:"role-arn" group:"credentials" help:"S3: role to assume with the integration's external ID."`
	GCSJSONKeyFile      string `name:"gcs-json-key-file" group:"credentials" placeholder:"FILE" help:"GCS: service-account JSON key file (- = stdin; or env AUDITEXPORT_GCS_JSON_KEY)."`
	AzureAccountName    string `name:"azure-account-name" group:"credentials" help:"Azure: storage account name (with --azure-account-key-file or env AUDITEXPORT_AZURE_ACCOUNT_KEY)."`
	AzureAccountKeyFile string `name:"azure-account-key-file" group:"credentials" placeholder:"FILE" help:"Azure: file holding the shared account key (- = stdin)."`
	AzureSASFile        string `name:"azure-sas-file" group:"credentials" placeholder:"FILE" help:"Azure: file holding a SAS token (- = stdin; or env AUDITEXPORT_AZURE_SAS)."`
}

// build returns the credentials the flags describe, or nil for none. The
// environment variables only count together with their identifying flag
// (or alone for GCS/SAS, which have none, and then only when the request
// has no credentials yet from --from-file), so an exported
// AUDITEXPORT_SECRET_ACCESS_KEY or AUDITEXPORT_GCS_JSON_KEY does not
// sneak into an unrelated request.
func (f credFlags) build(e *env, provider pb.Provider, haveCreds bool) (*pb.StorageCredentials, error) {
	switch {
	case f.AccessKeyID != "":
		secret, err := e.requiredSecret("access-key-id", "secret-access-key-file", f.SecretAccessKeyFile, "AUDITEXPORT_SECRET_ACCESS_KEY")
		if err != nil {
			return nil, err
		}
		return &pb.StorageCredentials{Kind: &pb.StorageCredentials_AwsAccessKey{AwsAccessKey: &pb.AwsAccessKey{AccessKeyId: f.AccessKeyID, SecretAccessKey: secret}}}, nil
	case f.RoleARN != "":
		return &pb.StorageCredentials{Kind: &pb.StorageCredentials_AwsRole{AwsRole: &pb.AwsRole{RoleArn: f.RoleARN}}}, nil
	case f.AzureAccountName != "":
		key, err := e.requiredSecret("azure-account-name", "azure-account-key-file", f.AzureAccountKeyFile, "AUDITEXPORT_AZURE_ACCOUNT_KEY")
		if err != nil {
			return nil, err
		}
		return &pb.StorageCredentials{Kind: &pb.StorageCredentials_AzureSharedKey{AzureSharedKey: &pb.AzureSharedKey{AccountName: f.AzureAccountName, AccountKey: key}}}, nil
	case f.SecretAccessKeyFile != "" || f.AzureAccountKeyFile != "":
		return nil, usagef("a secret file needs its identity flag (--access-key-id or --azure-account-name)")
	}
	if f.GCSJSONKeyFile != "" || (provider == pb.Provider_PROVIDER_GCS && !haveCreds) {
		key, ok, err := e.secret("gcs-json-key-file", f.GCSJSONKeyFile, "AUDITEXPORT_GCS_JSON_KEY")
		if err != nil || ok {
			return &pb.StorageCredentials{Kind: &pb.StorageCredentials_GcsServiceAccount{GcsServiceAccount: &pb.GcsServiceAccount{JsonKey: key}}}, err
		}
	}
	if f.AzureSASFile != "" || (provider == pb.Provider_PROVIDER_AZURE_BLOB && !haveCreds) {
		tok, ok, err := e.secret("azure-sas-file", f.AzureSASFile, "AUDITEXPORT_AZURE_SAS")
		if err != nil || ok {
			return &pb.StorageCredentials{Kind: &pb.StorageCredentials_AzureSas{AzureSas: &pb.AzureSas{Token: tok}}}, err
		}
	}
	return nil, nil
}

type intFields struct {
	Name        string `name:"name" help:"Integration name (unique; letters, digits, _ and -)."`
	Destination string `name:"destination" help:"Base location: s3://bucket/prefix/, gcs://bucket/prefix/, azure://ACCOUNT.blob.core.windows.net/CONTAINER/prefix/ or file:///abs/dir/."`
	Region      string `name:"region" help:"Region (S3)."`
	Endpoint    string `name:"endpoint" help:"Custom endpoint (S3-compatible stores, emulators)."`
	credFlags
}

// apply sets the given flags on in; it reports whether credentials came
// from flags (for the update mask).
func (f intFields) apply(e *env, in *pb.StorageIntegration) (bool, error) {
	setIfGiven(e, "name", &in.Name, f.Name)
	setIfGiven(e, "destination", &in.Destination, f.Destination)
	setIfGiven(e, "region", &in.Region, f.Region)
	setIfGiven(e, "endpoint", &in.Endpoint, f.Endpoint)
	creds, err := f.build(e, in.GetProvider(), in.GetCredentials() != nil)
	if creds != nil {
		in.Credentials = creds
	}
	return creds != nil, err
}

type intCreateCmd struct {
	fromFile
	Provider string `name:"provider" help:"s3, gcs, azure-blob or local."`
	intFields
}

func (c *intCreateCmd) Run(e *env) error {
	req := &pb.CreateStorageIntegrationRequest{}
	if err := c.load(e, req); err != nil {
		return err
	}
	if req.StorageIntegration == nil {
		req.StorageIntegration = &pb.StorageIntegration{}
	}
	in := req.StorageIntegration
	if err := enumFlag("provider", c.Provider, pb.Provider(0).Descriptor(), &in.Provider); err != nil {
		return err
	}
	if _, err := c.apply(e, in); err != nil {
		return err
	}
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Integrations.CreateStorageIntegration(ctx, req)
	})
}

type intListCmd struct{ listFlags }

func (c *intListCmd) Run(e *env) error {
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		return cl.Integrations.ListStorageIntegrations(ctx, &pb.ListStorageIntegrationsRequest{PageSize: c.PageSize, PageToken: token})
	})
}

type intGetCmd struct {
	ID string `arg:"" help:"Integration id (int_…)."`
}

func (c *intGetCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Integrations.GetStorageIntegration(ctx, &pb.GetStorageIntegrationRequest{Id: c.ID})
	})
}

type intUpdateCmd struct {
	ID string `arg:"" help:"Integration id (int_…)."`
	fromFile
	intFields
	UpdateLinkedSchedules bool `name:"update-linked-schedules" help:"Keep linked schedules running (by default they are paused with reason INTEGRATION_UPDATED)."`
}

func (c *intUpdateCmd) Run(e *env) error {
	req := &pb.UpdateStorageIntegrationRequest{}
	if err := c.load(e, req); err != nil {
		return err
	}
	if req.StorageIntegration == nil {
		req.StorageIntegration = &pb.StorageIntegration{}
	}
	req.StorageIntegration.Id = c.ID
	newCreds, err := c.apply(e, req.StorageIntegration)
	if err != nil {
		return err
	}
	req.UpdateMask = e.updateMask(req.UpdateMask,
		maskField{"name", "name"}, maskField{"destination", "destination"},
		maskField{"region", "region"}, maskField{"endpoint", "endpoint"})
	if newCreds && !slices.Contains(req.UpdateMask.Paths, "credentials") {
		req.UpdateMask.Paths = append(req.UpdateMask.Paths, "credentials")
	}
	if len(req.UpdateMask.GetPaths()) == 0 {
		return usagef("nothing to update: give at least one of --name, --destination, --region, --endpoint or credentials")
	}
	setIfGiven(e, "update-linked-schedules", &req.UpdateLinkedSchedules, c.UpdateLinkedSchedules)
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		resp, err := cl.Integrations.UpdateStorageIntegration(ctx, req)
		if n := len(resp.GetPausedScheduleIds()); n > 0 {
			fmt.Fprintf(e.stderr, "paused %d linked schedule(s) (INTEGRATION_UPDATED): %s\n"+
				"check their destinations and resume them (auditctl schedules resume ID), or next time pass --update-linked-schedules\n",
				n, strings.Join(resp.GetPausedScheduleIds(), ", "))
		}
		return resp, err
	})
}

type intDeleteCmd struct {
	ID                    string `arg:"" help:"Integration id (int_…)."`
	DeleteLinkedSchedules bool   `name:"delete-linked-schedules" help:"Delete the linked schedules too (by default they are paused with reason INTEGRATION_DELETED)."`
}

func (c *intDeleteCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Integrations.DeleteStorageIntegration(ctx, &pb.DeleteStorageIntegrationRequest{Id: c.ID, DeleteLinkedSchedules: c.DeleteLinkedSchedules})
	})
}

type intTestCmd struct {
	ID string `arg:"" help:"Integration id (int_…)."`
}

// Run exits non-zero when the probe fails, so scripts can gate on it.
func (c *intTestCmd) Run(e *env) error {
	var ok bool
	err := e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		r, err := cl.Integrations.TestStorageIntegration(ctx, &pb.TestStorageIntegrationRequest{Id: c.ID})
		ok = r.GetOk()
		return r, err
	})
	if err == nil && !ok {
		return runEnded{}
	}
	return err
}

type intCredentialsCmd struct {
	ID string `arg:"" help:"Integration id (int_…)."`
}

func (c *intCredentialsCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Integrations.GetStorageIntegrationCredentials(ctx, &pb.GetStorageIntegrationCredentialsRequest{Id: c.ID})
	})
}
