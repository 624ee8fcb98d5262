package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/schedules"
)

func runErrorPB(e *export.RunError) *pb.ExportError {
	if e == nil {
		return nil
	}
	return &pb.ExportError{Code: e.Code, Message: e.Message, ProviderMessage: e.ProviderMessage}
}

func progressPB(p export.Progress) *pb.ExportProgress {
	return &pb.ExportProgress{
		RunId: p.RunID, Phase: pb.ExportPhase(enumProto(pb.ExportPhase_value, "EXPORT_PHASE_", p.Phase)),
		RowsExported: p.Rows, BytesUploaded: p.Bytes, TotalRows: p.TotalRows, ObjectUri: p.ObjectURI, Note: p.Note,
		Error: runErrorPB(p.Error), Time: timestamppb.New(p.Time),
	}
}

func runPB(r *ent.ExportRun) *pb.ExportRun {
	out := &pb.ExportRun{
		Id: r.ID, ScheduleId: r.ScheduleID,
		Trigger:     pb.Trigger(enumProto(pb.Trigger_value, "TRIGGER_", string(r.Trigger))),
		State:       pb.RunState(enumProto(pb.RunState_value, "RUN_STATE_", string(r.State))),
		PeriodStart: tsPtr(r.PeriodStart), PeriodEnd: tsPtr(r.PeriodEnd),
		ObjectUri: r.ObjectURI, Rows: r.Rows, Bytes: r.Bytes, Checksum: r.Checksum, Attempt: int32(r.Attempt),
		CreateTime: ts(r.CreateTime), StartTime: tsPtr(r.StartTime), FinishTime: tsPtr(r.FinishTime),
		RequestedBy: r.RequestedBy, Note: r.Note, ManifestUri: r.ManifestURI,
	}
	if r.ErrorCode != "" {
		out.Error = &pb.ExportError{Code: r.ErrorCode, Message: r.ErrorMessage, ProviderMessage: r.ProviderMessage}
	}
	return out
}

// stream forwards a run's progress to a client until the terminal report.
// The first report goes out at once (the caller sends QUEUED before any
// work starts), so clients see something within milliseconds.
func stream(ctx context.Context, runs *export.Runner, run *ent.ExportRun, first *export.Progress, send func(*pb.ExportProgress) error) error {
	if first != nil {
		if err := send(progressPB(*first)); err != nil {
			return err
		}
	}
	for p := range runs.Watch(ctx, run) {
		if first != nil && p.Phase == first.Phase && p.Rows == first.Rows && !export.Terminal(p.Phase) {
			first = nil
			continue // the same QUEUED report again
		}
		first = nil
		if err := send(progressPB(p)); err != nil {
			return err
		}
		if export.Terminal(p.Phase) {
			return nil
		}
	}
	return ctx.Err()
}

// SendNow implements pb.ScheduleServiceServer.
func (s *ScheduleService) SendNow(req *pb.SendNowRequest, srv grpc.ServerStreamingServer[pb.SendNowResponse]) error {
	ctx := srv.Context()
	sc, err := s.manage(ctx, req.GetId())
	if err != nil {
		return err
	}
	// Checked again when the run starts (internal/export).
	if err := s.requireAuthorizedOwner(ctx, sc, "run"); err != nil {
		return err
	}
	if err := schedules.CheckSendNow(ctx, s.db, sc); err != nil {
		return commandError(ctx, s.log, "send now", err)
	}
	run, first, err := s.runs.Start(ctx, sc.ID, exportrun.TriggerSEND_NOW.String(), auth.FromContext(ctx).UserID)
	if err != nil {
		return commandError(ctx, s.log, "start run", err)
	}
	auditMeta(ctx, "run_id", run.ID)
	err = stream(ctx, s.runs, run, &first, func(p *pb.ExportProgress) error {
		return srv.Send(&pb.SendNowResponse{Progress: p})
	})
	if err != nil && ctx.Err() != nil {
		// The client went away; the run carries on (WatchExportRun reattaches).
		return nil
	}
	return err
}

// getRun loads a run the caller may see (any member of the org).
func (s *ScheduleService) getRun(ctx context.Context, id string) (*ent.ExportRun, error) {
	var v violations
	idField(&v, "id", id)
	if err := v.err(); err != nil {
		return nil, err
	}
	auditObject(ctx, "EXPORT_RUN", id)
	run, err := s.db.ExportRun.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, notFound("export run", id)
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "get run", err)
	}
	return run, nil
}

// WatchExportRun implements pb.ScheduleServiceServer.
func (s *ScheduleService) WatchExportRun(req *pb.WatchExportRunRequest, srv grpc.ServerStreamingServer[pb.WatchExportRunResponse]) error {
	ctx := srv.Context()
	run, err := s.getRun(ctx, req.GetId())
	if err != nil {
		return err
	}
	err = stream(ctx, s.runs, run, nil, func(p *pb.ExportProgress) error {
		return srv.Send(&pb.WatchExportRunResponse{Progress: p})
	})
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// GetExportRun implements pb.ScheduleServiceServer.
func (s *ScheduleService) GetExportRun(ctx context.Context, req *pb.GetExportRunRequest) (*pb.GetExportRunResponse, error) {
	run, err := s.getRun(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &pb.GetExportRunResponse{Run: runPB(run)}, nil
}

// ListExportRuns implements pb.ScheduleServiceServer (newest first).
func (s *ScheduleService) ListExportRuns(ctx context.Context, req *pb.ListExportRunsRequest) (*pb.ListExportRunsResponse, error) {
	var v violations
	size := pageSize(&v, req.GetPageSize())
	if req.GetScheduleId() != "" {
		idField(&v, "schedule_id", req.GetScheduleId())
	}
	state := enumField(&v, "state", req.GetState(), "RUN_STATE_", false)
	trigger := enumField(&v, "trigger", req.GetTrigger(), "TRIGGER_", false)
	since, until := optTime(&v, "since", req.GetSince()), optTime(&v, "until", req.GetUntil())
	if since != nil && until != nil && !until.After(*since) {
		v.add("until", "must be after since")
	}
	// A page token is only good for the list (schedule and filters) it came from.
	list := fmt.Sprintf("run:%s|%s|%s|%v|%v", req.GetScheduleId(), state, trigger, since, until)
	before := decodeToken(&v, list, req.GetPageToken())
	if err := v.err(); err != nil {
		return nil, err
	}
	q := s.db.ExportRun.Query().Order(ent.Desc(exportrun.FieldID)).Limit(size + 1)
	if id := req.GetScheduleId(); id != "" {
		if _, err := s.get(ctx, id); err != nil {
			return nil, err
		}
		q = q.Where(exportrun.ScheduleID(id))
	}
	if state != "" {
		q = q.Where(exportrun.StateEQ(exportrun.State(state)))
	}
	if trigger != "" {
		q = q.Where(exportrun.TriggerEQ(exportrun.Trigger(trigger)))
	}
	if since != nil {
		q = q.Where(exportrun.CreateTimeGTE(*since))
	}
	if until != nil {
		q = q.Where(exportrun.CreateTimeLT(*until))
	}
	if before != "" {
		q = q.Where(exportrun.IDLT(before))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list runs", err)
	}
	resp := &pb.ListExportRunsResponse{}
	rows, resp.NextPageToken = page(rows, size, list, func(r *ent.ExportRun) string { return r.ID })
	for _, r := range rows {
		resp.Runs = append(resp.Runs, runPB(r))
	}
	return resp, nil
}

// optTime checks an optional timestamp field (nil when unset).
func optTime(v *violations, field string, ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	if err := ts.CheckValid(); err != nil {
		v.add(field, "is not a valid timestamp")
		return nil
	}
	t := ts.AsTime()
	return &t
}

// CancelExportRun implements pb.ScheduleServiceServer.
func (s *ScheduleService) CancelExportRun(ctx context.Context, req *pb.CancelExportRunRequest) (*pb.CancelExportRunResponse, error) {
	run, err := s.getRun(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	sc, err := s.db.Schedule.Get(ctx, run.ScheduleID)
	owner := run.RequestedBy
	if err == nil {
		owner = sc.OwnerID
	}
	p := auth.FromContext(ctx)
	if !p.OwnsOrAdmin(owner) && p.UserID != run.RequestedBy {
		return nil, permissionDenied("only the schedule's owner or an ADMIN may cancel its runs")
	}
	run, err = s.runs.Cancel(ctx, run.ID)
	if errors.Is(err, export.ErrFinished) {
		return nil, failedPrecondition("RUN_FINISHED", "the run already finished ("+string(run.State)+")")
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "cancel run", err)
	}
	return &pb.CancelExportRunResponse{Run: runPB(run)}, nil
}
