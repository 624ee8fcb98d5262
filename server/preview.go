package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/cron"
)

// previewDefault and previewMax bound PreviewScheduleRequest.count.
const (
	previewDefault = 5
	previewMax     = 50
)

// PreviewSchedule implements pb.ScheduleServiceServer. It computes with the
// scheduler's own parser and Next (internal/cron), so what a form previews is
// what the dispatcher will do, DST transitions included.
func (s *ScheduleService) PreviewSchedule(_ context.Context, req *pb.PreviewScheduleRequest) (*pb.PreviewScheduleResponse, error) {
	var v violations
	text(&v, "cron", req.GetCron(), true, 128)
	text(&v, "time_zone", req.GetTimeZone(), true, 64)
	n := int(req.GetCount())
	switch {
	case n == 0:
		n = previewDefault
	case n < 0 || n > previewMax:
		v.add("count", "must be between 1 and %d (got %d); 0 means %d", previewMax, n, previewDefault)
	}
	after := s.now()
	if req.After != nil {
		if err := req.After.CheckValid(); err != nil {
			v.add("after", "is not a valid timestamp: %v", err)
		} else {
			after = req.After.AsTime()
		}
	}
	if !v.empty() {
		return nil, v.err()
	}
	c, err := cron.Parse(req.GetCron(), req.GetTimeZone())
	if fe, ok := err.(*cron.FieldError); ok {
		return nil, invalidField(fe.Field, "%s", fe.Msg)
	} else if err != nil {
		return nil, err
	}
	out := &pb.PreviewScheduleResponse{}
	t := after
	for len(out.Runs) < n {
		t = c.Next(t)
		if t.IsZero() { // nothing more within the parser's horizon
			break
		}
		local := t.In(c.Location())
		abbr, _ := local.Zone()
		out.Runs = append(out.Runs, &pb.PreviewedRun{
			RunTime:          timestamppb.New(t),
			LocalTime:        local.Format(time.RFC3339),
			ZoneAbbreviation: abbr,
		})
	}
	return out, nil
}
