package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/ownership"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/schedules"
)

var _ pb.ScheduleServiceServer = (*ScheduleService)(nil)

// ScheduleService implements pb.ScheduleServiceServer.
type ScheduleService struct {
	pb.UnimplementedScheduleServiceServer
	db   *ent.Client
	wb   *WorkbookService
	runs *export.Runner
	log  *slog.Logger
	now  func() time.Time
	// notifyDomains: see WithNotifyAllowedDomains.
	notifyDomains []string
}

// NewScheduleService builds the service.
func NewScheduleService(db *ent.Client, wb *WorkbookService, runs *export.Runner, log *slog.Logger) *ScheduleService {
	return &ScheduleService{db: db, wb: wb, runs: runs, log: log, now: time.Now}
}

// scheduleFields checks the shape of the fields named in paths (all on
// create) and returns them; the rules that need the database are
// internal/schedules'.
func scheduleFields(v *violations, sc *pb.Schedule, paths map[string]bool) schedules.Fields {
	const f = "schedule."
	var out schedules.Fields
	if paths[schedules.FieldName] {
		text(v, f+"name", sc.GetName(), false, 256)
		out.Name = sc.GetName()
	}
	if paths[schedules.FieldElementID] {
		out.ElementID = sc.GetElementId()
		if out.ElementID == "" {
			v.add(f+"element_id", "is required")
		}
	}
	if paths[schedules.FieldDestination] {
		cs := sc.GetDestination().GetCloudStorage()
		text(v, f+"destination.cloud_storage.storage_integration_name", cs.GetStorageIntegrationName(), true, 128)
		text(v, f+"destination.cloud_storage.uri", cs.GetUri(), true, 1024)
		out.IntegrationName, out.URI = cs.GetStorageIntegrationName(), cs.GetUri()
	}
	out.PrefixFileNameWithDatetime = sc.GetPrefixFileNameWithDatetime()
	if paths[schedules.FieldFormat] {
		out.Format = enumField(v, f+"format", sc.GetFormat(), "FORMAT_", true)
	}
	if paths[schedules.FieldCompression] {
		out.Compression = enumOr(v, f+"compression", sc.GetCompression(), "COMPRESSION_", "NONE")
	}
	out.CsvEscapeFormulas = sc.CsvEscapeFormulas == nil || sc.GetCsvEscapeFormulas()
	if paths[schedules.FieldCron] {
		text(v, f+"cron", sc.GetCron(), true, 128)
		out.Cron = sc.GetCron()
	}
	if paths[schedules.FieldTimeZone] {
		text(v, f+"time_zone", sc.GetTimeZone(), true, 64)
		out.TimeZone = sc.GetTimeZone()
	}
	if paths[schedules.FieldSendCondition] {
		out.SendCondition = enumOr(v, f+"send_condition", sc.GetSendCondition(), "SEND_CONDITION_", "ALWAYS")
	}
	if paths[schedules.FieldMode] {
		out.Mode = enumOr(v, f+"mode", sc.GetMode(), "EXPORT_MODE_", "SNAPSHOT")
	}
	if paths[schedules.FieldCatchUp] {
		out.CatchUp = enumOr(v, f+"catch_up", sc.GetCatchUp(), "CATCH_UP_", "ONE")
	}
	if paths[schedules.FieldNotifyEmails] {
		if len(sc.GetNotifyEmails()) > 50 {
			v.add(f+"notify_emails", "at most 50 addresses")
		}
		for i, e := range sc.GetNotifyEmails() {
			email(v, fmt.Sprintf("%snotify_emails[%d]", f, i), e)
		}
		out.NotifyEmails = sc.GetNotifyEmails()
	}
	return out
}

var scheduleUpdatable = schedules.AllFields
var scheduleOutputOnly = []string{"id", "workbook_id", "owner", "state", "pause_reason", "next_run_time", "last_run", "consecutive_failures", "create_time", "update_time"}

// CreateSchedule implements pb.ScheduleServiceServer.
func (s *ScheduleService) CreateSchedule(ctx context.Context, req *pb.CreateScheduleRequest) (*pb.CreateScheduleResponse, error) {
	wb, err := s.wb.visible(ctx, s.db, "workbook_id", req.GetWorkbookId())
	if err != nil {
		return nil, err
	}
	p := auth.FromContext(ctx)
	if !p.CanCreate() {
		return nil, permissionDenied("VIEWER accounts cannot create schedules")
	}
	if !wb.Saved {
		return nil, commandError(ctx, s.log, "create schedule", schedules.ErrWorkbookNotSaved)
	}
	if !p.CanAccessConnection(auditLogsConnection(p).Id) {
		return nil, permissionDenied("no access to connection " + auditLogsConnection(p).Id)
	}
	sc := req.GetSchedule()
	if sc == nil {
		return nil, invalidField("schedule", "is required")
	}
	all := map[string]bool{}
	for _, k := range schedules.AllFields {
		all[k] = true
	}
	var v violations
	in := scheduleFields(&v, sc, all)
	if err := v.err(); err != nil {
		return nil, err
	}
	row, err := s.cmds().Create(ctx, wb, p.UserID, in)
	if err != nil {
		return nil, commandError(ctx, s.log, "create schedule", err)
	}
	auditObject(ctx, "SCHEDULE", row.ID)
	auditMeta(ctx, "workbook_id", wb.ID)
	return &pb.CreateScheduleResponse{Schedule: schedulePB(row)}, nil
}

// cmds are the schedule writes with the server's configuration.
func (s *ScheduleService) cmds() *schedules.Commands {
	return schedules.New(s.db, s.notifyDomains, s.now)
}

func schedulePB(r *ent.Schedule) *pb.Schedule {
	esc := r.CsvEscapeFormulas
	out := &pb.Schedule{
		Id: r.ID, WorkbookId: r.WorkbookID, ElementId: r.ElementID, Name: r.Name, Owner: r.OwnerID,
		Destination:                &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{StorageIntegrationName: r.IntegrationName, Uri: r.URI}},
		PrefixFileNameWithDatetime: r.PrefixFileNameWithDatetime,
		Format:                     pb.Format(enumProto(pb.Format_value, "FORMAT_", string(r.Format))),
		Compression:                pb.Compression(enumProto(pb.Compression_value, "COMPRESSION_", string(r.Compression))),
		CsvEscapeFormulas:          &esc,
		Cron:                       r.Cron, TimeZone: r.TimeZone,
		SendCondition:       pb.SendCondition(enumProto(pb.SendCondition_value, "SEND_CONDITION_", string(r.SendCondition))),
		Mode:                pb.ExportMode(enumProto(pb.ExportMode_value, "EXPORT_MODE_", string(r.Mode))),
		NotifyEmails:        r.NotifyEmails,
		State:               pb.ScheduleState(enumProto(pb.ScheduleState_value, "SCHEDULE_STATE_", string(r.State))),
		CatchUp:             pb.CatchUp(enumProto(pb.CatchUp_value, "CATCH_UP_", string(r.CatchUp))),
		NextRunTime:         tsPtr(r.NextRunTime),
		ConsecutiveFailures: int32(r.ConsecutiveFailures),
		ManifestChainLength: r.ManifestSequence, ManifestChainHead: r.ManifestHead,
		CreateTime: ts(r.CreateTime), UpdateTime: ts(r.UpdateTime),
	}
	if r.PauseReason != nil {
		out.PauseReason = pb.PauseReason(enumProto(pb.PauseReason_value, "PAUSE_REASON_", string(*r.PauseReason)))
	}
	if r.State == schedule.StatePAUSED {
		out.NextRunTime = nil
	}
	return out
}

// schedulesPB converts rows and fills each one's last_run from its run
// (one query for all of them).
func (s *ScheduleService) schedulesPB(ctx context.Context, rows ...*ent.Schedule) ([]*pb.Schedule, error) {
	var runIDs []string
	for _, r := range rows {
		if r.LastRunID != "" {
			runIDs = append(runIDs, r.LastRunID)
		}
	}
	runs := map[string]*ent.ExportRun{}
	if len(runIDs) > 0 {
		found, err := s.db.ExportRun.Query().Where(exportrun.IDIn(runIDs...)).
			Select(exportrun.FieldID, exportrun.FieldState, exportrun.FieldFinishTime, exportrun.FieldObjectURI).All(ctx)
		if err != nil {
			return nil, internalError(ctx, s.log, "load last runs", err)
		}
		for _, run := range found {
			runs[run.ID] = run
		}
	}
	out := make([]*pb.Schedule, 0, len(rows))
	for _, r := range rows {
		p := schedulePB(r)
		if run := runs[r.LastRunID]; run != nil {
			p.LastRun = &pb.RunSummary{RunId: run.ID, State: pb.RunState(enumProto(pb.RunState_value, "RUN_STATE_", string(run.State))),
				FinishTime: tsPtr(run.FinishTime), ObjectUri: run.ObjectURI}
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *ScheduleService) get(ctx context.Context, id string) (*ent.Schedule, error) {
	var v violations
	idField(&v, "id", id)
	if err := v.err(); err != nil {
		return nil, err
	}
	auditObject(ctx, "SCHEDULE", id)
	row, err := s.db.Schedule.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, notFound("schedule", id)
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "get schedule", err)
	}
	return row, nil
}

// manage loads a schedule the caller may change (owner or ADMIN).
func (s *ScheduleService) manage(ctx context.Context, id string) (*ent.Schedule, error) {
	row, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !auth.FromContext(ctx).OwnsOrAdmin(row.OwnerID) {
		return nil, permissionDenied("only the schedule's owner or an ADMIN may change it")
	}
	return row, nil
}

// requireAuthorizedOwner refuses to act on a schedule whose owner may no
// longer own schedules (it runs with their authority, whoever asks), and
// pauses it if it is still active. The reason is OWNER_NOT_AUTHORIZED:
// PERMISSION_DENIED for the owner, FAILED_PRECONDITION for an ADMIN.
func (s *ScheduleService) requireAuthorizedOwner(ctx context.Context, sc *ent.Schedule, action string) error {
	var denied *ownership.Error
	err := ownership.CheckCaller(ctx, s.db, sc.OwnerID)
	if !errors.As(err, &denied) {
		if err != nil {
			return internalError(ctx, s.log, "check schedule owner", err)
		}
		return nil
	}
	if _, err := ownership.PauseSchedule(ctx, s.db, sc.ID); err != nil {
		s.log.ErrorContext(ctx, "pausing the schedule of an unauthorized owner failed", "schedule_id", sc.ID, "err", err.Error(), "request_id", requestIDFrom(ctx))
	}
	if auth.FromContext(ctx).UserID == sc.OwnerID {
		return newStatus(codes.PermissionDenied, ownership.Code, "you may no longer "+action+" your schedules ("+denied.Why+"); an ADMIN can restore your access")
	}
	return newStatus(codes.FailedPrecondition, ownership.Code, "cannot "+action+" this schedule: "+denied.Error()+"; restore the owner's access first")
}

// GetSchedule implements pb.ScheduleServiceServer.
func (s *ScheduleService) GetSchedule(ctx context.Context, req *pb.GetScheduleRequest) (*pb.GetScheduleResponse, error) {
	row, err := s.get(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	out, err := s.schedulesPB(ctx, row)
	if err != nil {
		return nil, err
	}
	return &pb.GetScheduleResponse{Schedule: out[0]}, nil
}

// ListSchedules implements pb.ScheduleServiceServer.
func (s *ScheduleService) ListSchedules(ctx context.Context, req *pb.ListSchedulesRequest) (*pb.ListSchedulesResponse, error) {
	var v violations
	size := pageSize(&v, req.GetPageSize())
	after := decodeToken(&v, "sch", req.GetPageToken())
	text(&v, "workbook_id", req.GetWorkbookId(), false, 64)
	text(&v, "storage_integration_id", req.GetStorageIntegrationId(), false, 64)
	state := enumField(&v, "state", req.GetState(), "SCHEDULE_STATE_", false)
	if err := v.err(); err != nil {
		return nil, err
	}
	q := s.db.Schedule.Query().Order(ent.Asc(schedule.FieldID)).Limit(size + 1)
	if after != "" {
		q = q.Where(schedule.IDGT(after))
	}
	if id := req.GetWorkbookId(); id != "" {
		q = q.Where(schedule.WorkbookID(id))
	}
	if id := req.GetStorageIntegrationId(); id != "" {
		q = q.Where(schedule.IntegrationID(id))
	}
	if state != "" {
		q = q.Where(schedule.StateEQ(schedule.State(state)))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list schedules", err)
	}
	resp := &pb.ListSchedulesResponse{}
	rows, resp.NextPageToken = page(rows, size, "sch", func(r *ent.Schedule) string { return r.ID })
	if resp.Schedules, err = s.schedulesPB(ctx, rows...); err != nil {
		return nil, err
	}
	return resp, nil
}

// UpdateSchedule implements pb.ScheduleServiceServer.
func (s *ScheduleService) UpdateSchedule(ctx context.Context, req *pb.UpdateScheduleRequest) (*pb.UpdateScheduleResponse, error) {
	sc := req.GetSchedule()
	if sc == nil {
		return nil, invalidField("schedule", "is required")
	}
	cur, err := s.manage(ctx, sc.GetId())
	if err != nil {
		return nil, err
	}
	// An ADMIN may still edit it (the owner stays the owner, and its runs
	// still need the owner's authorization); its owner may not.
	if auth.FromContext(ctx).UserID == cur.OwnerID {
		if err := s.requireAuthorizedOwner(ctx, cur, "edit"); err != nil {
			return nil, err
		}
	}
	if err := revision.Check("schedule", sentTime(sc.GetUpdateTime()), cur.UpdateTime); err != nil {
		return nil, commandError(ctx, s.log, "update schedule", err)
	}
	var v violations
	paths := maskPaths(&v, req.GetUpdateMask(), scheduleUpdatable, scheduleOutputOnly)
	in := scheduleFields(&v, sc, paths)
	if paths[schedules.FieldName] && in.Name == "" {
		v.add("schedule.name", "is required")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	row, err := s.cmds().Update(ctx, cur, in, paths)
	if err != nil {
		return nil, commandError(ctx, s.log, "update schedule", err)
	}
	auditMeta(ctx, "update_mask", req.GetUpdateMask().GetPaths())
	out, err := s.schedulesPB(ctx, row)
	if err != nil {
		return nil, err
	}
	return &pb.UpdateScheduleResponse{Schedule: out[0]}, nil
}

// DeleteSchedule implements pb.ScheduleServiceServer.
func (s *ScheduleService) DeleteSchedule(ctx context.Context, req *pb.DeleteScheduleRequest) (*pb.DeleteScheduleResponse, error) {
	cur, err := s.manage(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := s.db.Schedule.DeleteOneID(cur.ID).Exec(ctx); err != nil {
		return nil, internalError(ctx, s.log, "delete schedule", err)
	}
	return &pb.DeleteScheduleResponse{}, nil
}

// PauseSchedule implements pb.ScheduleServiceServer.
func (s *ScheduleService) PauseSchedule(ctx context.Context, req *pb.PauseScheduleRequest) (*pb.PauseScheduleResponse, error) {
	cur, err := s.manage(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	row, err := schedules.Pause(ctx, s.db, cur.ID)
	if err != nil {
		return nil, commandError(ctx, s.log, "pause schedule", err)
	}
	out, err := s.schedulesPB(ctx, row)
	if err != nil {
		return nil, err
	}
	return &pb.PauseScheduleResponse{Schedule: out[0]}, nil
}

// ResumeSchedule implements pb.ScheduleServiceServer.
func (s *ScheduleService) ResumeSchedule(ctx context.Context, req *pb.ResumeScheduleRequest) (*pb.ResumeScheduleResponse, error) {
	cur, err := s.manage(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := s.requireAuthorizedOwner(ctx, cur, "resume"); err != nil {
		return nil, err
	}
	row, err := schedules.Resume(ctx, s.db, cur, s.now())
	if err != nil {
		return nil, commandError(ctx, s.log, "resume schedule", err)
	}
	out, err := s.schedulesPB(ctx, row)
	if err != nil {
		return nil, err
	}
	return &pb.ResumeScheduleResponse{Schedule: out[0]}, nil
}
