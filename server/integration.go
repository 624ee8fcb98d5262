package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/storageintegration"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/integrations"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/secrets"
	"github.com/auditexport/auditexport/internal/signing"
)

var _ pb.IntegrationServiceServer = (*IntegrationService)(nil)

// IntegrationConfig is the server configuration integrations depend on.
type IntegrationConfig struct {
	AllowPrivateEndpoints bool
	// StallTimeout: see destination.OpenOptions.
	StallTimeout time.Duration
	// Local says where each organization's LOCAL destinations may lie.
	Local destination.LocalDirs
	// Identity shown in "View credentials".
	IAMPrincipal      string
	GCSServiceAccount string
	AzureAppName      string
	AzureConsentURL   string
	// NotifyAllowedDomains: besides the organization's users, the domains
	// a schedule's notify_emails may be in (pause notices honour it too).
	NotifyAllowedDomains []string
}

// IntegrationService implements pb.IntegrationServiceServer.
type IntegrationService struct {
	pb.UnimplementedIntegrationServiceServer
	db   *ent.Client
	keys *secrets.Keyring
	mail *notify.Mailer
	cfg  IntegrationConfig
	log  *slog.Logger
	now  func() time.Time
	cmd  *integrations.Commands
}

// NewIntegrationService builds the service.
func NewIntegrationService(db *ent.Client, keys *secrets.Keyring, mail *notify.Mailer, cfg IntegrationConfig, log *slog.Logger) *IntegrationService {
	return &IntegrationService{db: db, keys: keys, mail: mail, cfg: cfg, log: log, now: time.Now,
		cmd: integrations.New(db, keys, mail, log, cfg.NotifyAllowedDomains)}
}

var integrationNamePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,127}$`)

func requireAdmin(ctx context.Context, what string) error {
	if !auth.FromContext(ctx).IsAdmin() {
		return permissionDenied("only an ADMIN may " + what)
	}
	return nil
}

// CreateStorageIntegration implements pb.IntegrationServiceServer.
func (s *IntegrationService) CreateStorageIntegration(ctx context.Context, req *pb.CreateStorageIntegrationRequest) (*pb.CreateStorageIntegrationResponse, error) {
	if err := requireAdmin(ctx, "create storage integrations"); err != nil {
		return nil, err
	}
	in := req.GetStorageIntegration()
	var v violations
	if in == nil {
		v.add("storage_integration", "is required")
		return nil, v.err()
	}
	const f = "storage_integration."
	s.checkName(&v, f+"name", in.GetName())
	prov := destination.Provider(enumField(&v, f+"provider", in.GetProvider(), "PROVIDER_", true))
	dest := s.checkDestination(ctx, &v, f, prov, in)
	creds := s.checkCredentials(ctx, &v, f+"credentials", prov, dest, in.GetCredentials())
	lock := checkObjectLock(&v, f+"object_lock", prov, in.GetObjectLock())
	if err := v.err(); err != nil {
		return nil, err
	}
	row, err := s.cmd.Create(ctx, integrations.CreateInput{Name: in.GetName(), Provider: prov, Destination: dest,
		Region: in.GetRegion(), Endpoint: in.GetEndpoint(), Creds: creds, CreatorID: auth.FromContext(ctx).UserID, ObjectLock: lock})
	if err != nil {
		return nil, commandError(ctx, s.log, "create integration", err)
	}
	auditObject(ctx, "STORAGE_INTEGRATION", row.ID)
	auditMeta(ctx, "provider", string(prov))
	auditMeta(ctx, "credential_kind", creds.Kind)
	return &pb.CreateStorageIntegrationResponse{StorageIntegration: integrationPB(row, 0)}, nil
}

func (s *IntegrationService) checkName(v *violations, field, name string) {
	text(v, field, name, true, 128)
	if v.empty() && !integrationNamePattern.MatchString(name) {
		v.add(field, "must start with a letter and contain only letters, digits, _ and - (at most 128)")
	}
}

// checkDestination validates destination, region and endpoint.
func (s *IntegrationService) checkDestination(ctx context.Context, v *violations, f string, prov destination.Provider, in *pb.StorageIntegration) destination.Location {
	var loc destination.Location
	text(v, f+"destination", in.GetDestination(), true, 1024)
	if prov != "" && in.GetDestination() != "" && utf8Valid(in.GetDestination()) {
		l, err := destination.ParseDestination(prov, in.GetDestination())
		if err != nil {
			v.add(f+"destination", "%s", err.Error())
		} else if prov == destination.Local {
			if err := s.cfg.Local.Check(auth.FromContext(ctx).OrgID, l); err != nil {
				v.add(f+"destination", "%s", err.Error())
			} else {
				loc = l
			}
		} else {
			loc = l
		}
	}
	text(v, f+"region", in.GetRegion(), false, 64)
	if r := in.GetRegion(); r != "" && !regionPattern.MatchString(r) {
		v.add(f+"region", "must look like us-east-1")
	}
	text(v, f+"endpoint", in.GetEndpoint(), false, 512)
	if e := in.GetEndpoint(); e != "" {
		if prov == destination.Local {
			v.add(f+"endpoint", "is not used by PROVIDER_LOCAL")
		} else if err := destination.ValidateEndpoint(ctx, e, s.cfg.AllowPrivateEndpoints); err != nil {
			v.add(f+"endpoint", "%s", err.Error())
		}
	}
	return loc
}

var regionPattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
var roleARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$`)

// checkCredentials validates the write-only credentials for the provider.
func (s *IntegrationService) checkCredentials(ctx context.Context, v *violations, f string, prov destination.Provider, dest destination.Location, c *pb.StorageCredentials) destination.Credentials {
	var out destination.Credentials
	if prov == destination.Local {
		if c.GetKind() != nil {
			v.add(f, "PROVIDER_LOCAL takes no credentials")
		}
		return out
	}
	switch k := c.GetKind().(type) {
	case nil:
		if prov != "" {
			v.add(f, "is required for %s", prov)
		}
	case *pb.StorageCredentials_AwsAccessKey:
		out.Kind = "aws_access_key"
		wantProvider(v, f, prov, destination.S3, "aws_access_key")
		text(v, f+".aws_access_key.access_key_id", k.AwsAccessKey.GetAccessKeyId(), true, 128)
		text(v, f+".aws_access_key.secret_access_key", k.AwsAccessKey.GetSecretAccessKey(), true, 1024)
		out.AccessKeyID, out.SecretAccessKey = k.AwsAccessKey.GetAccessKeyId(), k.AwsAccessKey.GetSecretAccessKey()
	case *pb.StorageCredentials_AwsRole:
		out.Kind = "aws_role"
		wantProvider(v, f, prov, destination.S3, "aws_role")
		if !roleARNPattern.MatchString(k.AwsRole.GetRoleArn()) {
			v.add(f+".aws_role.role_arn", "must be an IAM role ARN like arn:aws:iam::123456789012:role/name")
		}
		out.RoleARN = k.AwsRole.GetRoleArn()
	case *pb.StorageCredentials_GcsServiceAccount:
		out.Kind = "gcs_service_account"
		wantProvider(v, f, prov, destination.GCS, "gcs_service_account")
		field := f + ".gcs_service_account.json_key"
		text(v, field, k.GcsServiceAccount.GetJsonKey(), true, 16384)
		var key struct {
			Type        string `json:"type"`
			ClientEmail string `json:"client_email"`
			PrivateKey  string `json:"private_key"`
			TokenURI    string `json:"token_uri"`
		}
		if err := json.Unmarshal([]byte(k.GcsServiceAccount.GetJsonKey()), &key); err != nil {
			v.add(field, "must be a service account JSON key")
		} else if key.Type != "service_account" || key.ClientEmail == "" || key.PrivateKey == "" {
			v.add(field, "must be a service account JSON key (type, client_email and private_key are required)")
		} else if err := destination.ValidateTokenURI(ctx, key.TokenURI, s.cfg.AllowPrivateEndpoints); err != nil {
			v.add(field, "%s", err.Error())
		}
		out.JSONKey = k.GcsServiceAccount.GetJsonKey()
	case *pb.StorageCredentials_AzureSharedKey:
		out.Kind = "azure_shared_key"
		wantProvider(v, f, prov, destination.AzureBlob, "azure_shared_key")
		name := k.AzureSharedKey.GetAccountName()
		text(v, f+".azure_shared_key.account_name", name, true, 24)
		if dest.Account != "" && name != "" && name != dest.Account {
			v.add(f+".azure_shared_key.account_name", "must be the destination's account %q", dest.Account)
		}
		if _, err := base64.StdEncoding.DecodeString(k.AzureSharedKey.GetAccountKey()); err != nil || k.AzureSharedKey.GetAccountKey() == "" {
			v.add(f+".azure_shared_key.account_key", "must be a base64 storage account key")
		}
		out.AccountName, out.AccountKey = name, k.AzureSharedKey.GetAccountKey()
	case *pb.StorageCredentials_AzureSas:
		out.Kind = "azure_sas"
		wantProvider(v, f, prov, destination.AzureBlob, "azure_sas")
		text(v, f+".azure_sas.token", k.AzureSas.GetToken(), true, 4096)
		out.SASToken = strings.TrimPrefix(k.AzureSas.GetToken(), "?")
	}
	return out
}

func wantProvider(v *violations, f string, got, want destination.Provider, kind string) {
	if got != "" && got != want {
		v.add(f, "%s credentials do not fit provider %s", kind, got)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func integrationPB(r *ent.StorageIntegration, linked int) *pb.StorageIntegration {
	return &pb.StorageIntegration{
		Id:                  r.ID,
		Name:                r.Name,
		Provider:            pb.Provider(enumProto(pb.Provider_value, "PROVIDER_", string(r.Provider))),
		Destination:         r.Destination,
		Region:              r.Region,
		Endpoint:            r.Endpoint,
		LinkedScheduleCount: int32(linked),
		CreateTime:          ts(r.CreateTime),
		UpdateTime:          ts(r.UpdateTime),
		Creator:             r.CreatorID,
		ObjectLock:          objectLockPB(r),
	}
}

// checkObjectLock validates the write-once setting of a new integration.
func checkObjectLock(v *violations, field string, prov destination.Provider, in *pb.ObjectLock) destination.ObjectLock {
	if in == nil {
		return destination.ObjectLock{}
	}
	mode := enumField(v, field+".mode", in.GetMode(), "OBJECT_LOCK_MODE_", true)
	if prov != "" && prov != destination.S3 {
		v.add(field, "write-once storage is offered for S3 (Object Lock) only; %s destinations cannot be put under retention by this server", prov)
	}
	if d := in.GetRetainDays(); d < 1 || d > 36500 {
		v.add(field+".retain_days", "must be between 1 and 36500 days (got %d)", d)
	}
	return destination.ObjectLock{Mode: mode, Days: int(in.GetRetainDays())}
}

func objectLockPB(r *ent.StorageIntegration) *pb.ObjectLock {
	if r.ObjectLockMode == "" {
		return nil
	}
	return &pb.ObjectLock{Mode: pb.ObjectLockMode(enumProto(pb.ObjectLockMode_value, "OBJECT_LOCK_MODE_", r.ObjectLockMode)), RetainDays: int32(r.ObjectLockDays)}
}

func (s *IntegrationService) get(ctx context.Context, db *ent.Client, id string) (*ent.StorageIntegration, error) {
	var v violations
	idField(&v, "id", id)
	if err := v.err(); err != nil {
		return nil, err
	}
	auditObject(ctx, "STORAGE_INTEGRATION", id)
	row, err := db.StorageIntegration.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, notFound("storage integration", id)
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "get integration", err)
	}
	return row, nil
}

// linkedCount is the number of schedules writing through integration id.
func linkedCount(ctx context.Context, db *ent.Client, id string) (int, error) {
	n, err := integrations.LinkedCounts(ctx, db, []string{id})
	return n[id], err
}

// GetStorageIntegration implements pb.IntegrationServiceServer.
func (s *IntegrationService) GetStorageIntegration(ctx context.Context, req *pb.GetStorageIntegrationRequest) (*pb.GetStorageIntegrationResponse, error) {
	row, err := s.get(ctx, s.db, req.GetId())
	if err != nil {
		return nil, err
	}
	n, err := linkedCount(ctx, s.db, row.ID)
	if err != nil {
		return nil, internalError(ctx, s.log, "count schedules", err)
	}
	return &pb.GetStorageIntegrationResponse{StorageIntegration: integrationPB(row, n)}, nil
}

// ListStorageIntegrations implements pb.IntegrationServiceServer.
func (s *IntegrationService) ListStorageIntegrations(ctx context.Context, req *pb.ListStorageIntegrationsRequest) (*pb.ListStorageIntegrationsResponse, error) {
	var v violations
	size := pageSize(&v, req.GetPageSize())
	after := decodeToken(&v, "int", req.GetPageToken())
	if err := v.err(); err != nil {
		return nil, err
	}
	q := s.db.StorageIntegration.Query().Order(ent.Asc(storageintegration.FieldID)).Limit(size + 1)
	if after != "" {
		q = q.Where(storageintegration.IDGT(after))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list integrations", err)
	}
	resp := &pb.ListStorageIntegrationsResponse{}
	rows, resp.NextPageToken = page(rows, size, "int", func(r *ent.StorageIntegration) string { return r.ID })
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	counts, err := integrations.LinkedCounts(ctx, s.db, ids)
	if err != nil {
		return nil, internalError(ctx, s.log, "count schedules", err)
	}
	for _, r := range rows {
		resp.StorageIntegrations = append(resp.StorageIntegrations, integrationPB(r, counts[r.ID]))
	}
	return resp, nil
}

var integrationUpdatable = []string{"name", "destination", "region", "endpoint", "credentials"}
var integrationOutputOnly = []string{"id", "linked_schedule_count", "create_time", "update_time", "creator"}

// UpdateStorageIntegration implements pb.IntegrationServiceServer.
func (s *IntegrationService) UpdateStorageIntegration(ctx context.Context, req *pb.UpdateStorageIntegrationRequest) (*pb.UpdateStorageIntegrationResponse, error) {
	if err := requireAdmin(ctx, "update storage integrations"); err != nil {
		return nil, err
	}
	in := req.GetStorageIntegration()
	if in == nil {
		return nil, invalidField("storage_integration", "is required")
	}
	cur, err := s.get(ctx, s.db, in.GetId())
	if err != nil {
		var v violations
		if in.GetId() == "" {
			v.add("storage_integration.id", "is required")
			return nil, v.err()
		}
		return nil, err
	}
	if err := revision.Check("storage integration", sentTime(in.GetUpdateTime()), cur.UpdateTime); err != nil {
		return nil, commandError(ctx, s.log, "update storage integration", err)
	}
	const f = "storage_integration."
	var v violations
	if contains(req.GetUpdateMask().GetPaths(), "provider") {
		v.add(f+"provider", "cannot change: delete the integration and create a new one")
	}
	paths := maskPaths(&v, req.GetUpdateMask(), integrationUpdatable, append(integrationOutputOnly, "provider"))
	prov := destination.Provider(cur.Provider)
	merged := &pb.StorageIntegration{Destination: cur.Destination, Region: cur.Region, Endpoint: cur.Endpoint}
	if paths["name"] {
		s.checkName(&v, f+"name", in.GetName())
	}
	if paths["destination"] {
		merged.Destination = in.GetDestination()
	}
	if paths["region"] {
		merged.Region = in.GetRegion()
	}
	if paths["endpoint"] {
		merged.Endpoint = in.GetEndpoint()
	}
	dest := s.checkDestination(ctx, &v, f, prov, merged)
	var creds destination.Credentials
	if paths["credentials"] {
		creds = s.checkCredentials(ctx, &v, f+"credentials", prov, dest, in.GetCredentials())
	} else if moved := redirected(paths, cur, merged, dest); moved != "" && prov != destination.Local {
		v.add(f+"credentials", "must be sent again when the %s changes: stored credentials are only used where they were given for", moved)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	change := integrations.UpdateInput{FollowSchedules: req.GetUpdateLinkedSchedules()}
	if paths["name"] {
		change.Name = proto.String(in.GetName())
	}
	if paths["destination"] {
		change.Destination = &dest
	}
	if paths["region"] {
		change.Region = proto.String(merged.Region)
	}
	if paths["endpoint"] {
		change.Endpoint = proto.String(merged.Endpoint)
	}
	if paths["credentials"] {
		change.Creds = &creds
	}
	res, err := s.cmd.Update(ctx, cur, change)
	if err != nil {
		return nil, commandError(ctx, s.log, "update integration", err)
	}
	auditMeta(ctx, "update_mask", req.GetUpdateMask().GetPaths())
	auditMeta(ctx, "paused_schedule_ids", res.Paused)
	s.cmd.NotifyPaused(ctx, res.Paused, res.Integration.Name, "INTEGRATION_UPDATED", "was updated")
	n, err := linkedCount(ctx, s.db, res.Integration.ID)
	if err != nil {
		return nil, internalError(ctx, s.log, "count schedules", err)
	}
	return &pb.UpdateStorageIntegrationResponse{StorageIntegration: integrationPB(res.Integration, n), PausedScheduleIds: res.Paused}, nil
}

// redirected names what an update changes about where stored credentials
// would be sent (the endpoint or the destination), "" if nothing. The
// provider never changes (refused above).
func redirected(paths map[string]bool, cur *ent.StorageIntegration, merged *pb.StorageIntegration, dest destination.Location) string {
	switch {
	case paths["endpoint"] && merged.Endpoint != cur.Endpoint:
		return "endpoint"
	case paths["destination"] && dest != destination.Location{} && dest.String() != cur.Destination: // an invalid one is reported as such
		return "destination"
	}
	return ""
}

// DeleteStorageIntegration implements pb.IntegrationServiceServer.
func (s *IntegrationService) DeleteStorageIntegration(ctx context.Context, req *pb.DeleteStorageIntegrationRequest) (*pb.DeleteStorageIntegrationResponse, error) {
	if err := requireAdmin(ctx, "delete storage integrations"); err != nil {
		return nil, err
	}
	cur, err := s.get(ctx, s.db, req.GetId())
	if err != nil {
		return nil, err
	}
	res, err := s.cmd.Delete(ctx, cur, req.GetDeleteLinkedSchedules())
	if err != nil {
		return nil, commandError(ctx, s.log, "delete integration", err)
	}
	auditMeta(ctx, "paused_schedule_ids", res.Paused)
	s.cmd.NotifyPaused(ctx, res.Paused, cur.Name, "INTEGRATION_DELETED", "was deleted")
	auditMeta(ctx, "deleted_schedule_ids", res.Deleted)
	return &pb.DeleteStorageIntegrationResponse{PausedScheduleIds: res.Paused, DeletedScheduleIds: res.Deleted}, nil
}

// GetStorageIntegrationCredentials implements pb.IntegrationServiceServer.
func (s *IntegrationService) GetStorageIntegrationCredentials(ctx context.Context, req *pb.GetStorageIntegrationCredentialsRequest) (*pb.GetStorageIntegrationCredentialsResponse, error) {
	if err := requireAdmin(ctx, "view integration credentials"); err != nil {
		return nil, err
	}
	row, err := s.get(ctx, s.db, req.GetId())
	if err != nil {
		return nil, err
	}
	c := &pb.StorageIntegrationCredentials{
		IntegrationName: row.Name,
		Provider:        pb.Provider(enumProto(pb.Provider_value, "PROVIDER_", string(row.Provider))),
		CredentialKind:  row.CredentialKind,
	}
	switch destination.Provider(row.Provider) {
	case destination.S3:
		c.ExternalId, c.IamPrincipal = row.ExternalID, s.cfg.IAMPrincipal
	case destination.GCS:
		c.ServiceAccount = s.cfg.GCSServiceAccount
	case destination.AzureBlob:
		c.AppName, c.ConsentUrl = s.cfg.AzureAppName, s.cfg.AzureConsentURL
	}
	keys, err := signing.New(s.db, s.keys).List(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list signing keys", err)
	}
	c.SigningKeys = signingKeysPB(keys)
	return &pb.GetStorageIntegrationCredentialsResponse{Credentials: c}, nil
}

// TestStorageIntegration implements pb.IntegrationServiceServer. A provider
// refusal is an answer (ok=false), not an RPC error.
func (s *IntegrationService) TestStorageIntegration(ctx context.Context, req *pb.TestStorageIntegrationRequest) (*pb.TestStorageIntegrationResponse, error) {
	if err := requireAdmin(ctx, "test storage integrations"); err != nil {
		return nil, err
	}
	row, err := s.get(ctx, s.db, req.GetId())
	if err != nil {
		return nil, err
	}
	target, err := export.IntegrationOf(s.keys, row)
	if err != nil {
		s.log.WarnContext(ctx, "stored credentials cannot be decrypted", "integration_id", row.ID, "err", err.Error())
		return nil, failedPrecondition(destination.CredentialsCode,
			err.Error()+"; the operator must restore the server's master key file, or an ADMIN must enter the credentials again")
	}
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res := destination.Probe(pctx, target, destination.OpenOptions{AllowPrivateEndpoints: s.cfg.AllowPrivateEndpoints, Local: s.cfg.Local, StallTimeout: s.cfg.StallTimeout})
	out := &pb.TestStorageIntegrationResponse{Ok: res.OK, Latency: durationpb.New(res.Latency), FailedStep: res.FailedStep, ProbeUri: res.URI}
	if res.Provider != nil {
		out.ProviderCode, out.ProviderMessage = res.Provider.Code, res.Provider.Message
	} else if !res.OK {
		out.ProviderMessage = res.Message
	}
	auditMeta(ctx, "ok", res.OK)
	auditMeta(ctx, "failed_step", res.FailedStep)
	return out, nil
}
