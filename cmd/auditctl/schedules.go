package main

import (
	"context"
	"path"
	"strings"

	"google.golang.org/protobuf/proto"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type schedulesCmd struct {
	Create  schCreateCmd  `cmd:"" help:"Schedule an export of a saved workbook's element."`
	List    schListCmd    `cmd:"" aliases:"ls" help:"List the schedules you can see."`
	Get     schGetCmd     `cmd:"" help:"Show one schedule."`
	Update  schUpdateCmd  `cmd:"" help:"Change a schedule; only the flags given are changed."`
	Delete  schDeleteCmd  `cmd:"" aliases:"rm" help:"Delete a schedule."`
	Pause   schPauseCmd   `cmd:"" help:"Pause a schedule (reason USER)."`
	Resume  schResumeCmd  `cmd:"" help:"Resume a paused schedule."`
	Preview schPreviewCmd `cmd:"" help:"Show the next run times of a cron in a time zone, as the scheduler computes them (DST included)."`
	SendNow schSendNowCmd `cmd:"" name:"send-now" help:"Export now and follow the run: a progress bar on a terminal, one line per progress message otherwise. Exits 1 if the run ends FAILED or CANCELED."`
}

// schFields are the settable fields of a schedule.
type schFields struct {
	Name              string   `name:"name" help:"Schedule name."`
	Element           string   `name:"element" help:"Element id (el_…); on create default: the workbook's only element."`
	Integration       string   `name:"integration" help:"Storage integration NAME the URI lies under."`
	URI               string   `name:"uri" help:"Object URI under the integration's destination; may hold {date} {time} {yyyy} {mm} {dd} {hh} {period_start} {period_end} {run_id} {schedule_id}."`
	Format            string   `name:"format" help:"csv, jsonl or parquet (create: from the URI's extension when omitted)."`
	Compression       string   `name:"compression" help:"none, gzip or zstd (create: from the URI's extension when omitted)."`
	Cron              string   `name:"cron" help:"5-field cron, e.g. '0 6 * * *'."`
	TimeZone          string   `name:"time-zone" help:"IANA time zone of the cron, e.g. Europe/Berlin (create: UTC when omitted)."`
	SendCondition     string   `name:"send-condition" help:"always, if-data or if-no-data."`
	Mode              string   `name:"mode" help:"snapshot (whole element each run) or incremental (only rows not yet exported)."`
	CatchUp           string   `name:"catch-up" help:"one (one run covering missed periods) or none."`
	NotifyEmail       []string `name:"notify-email" help:"Also e-mail failures to this address (repeatable)."`
	PrefixDatetime    bool     `name:"prefix-datetime" help:"Prefix the file name with the date and time."`
	CSVEscapeFormulas bool     `name:"csv-escape-formulas" negatable:"" help:"Escape cells that spreadsheets would run as formulas (server default: on)."`
}

var scheduleMask = []maskField{
	{"name", "name"}, {"element", "element_id"}, {"format", "format"}, {"compression", "compression"},
	{"cron", "cron"}, {"time-zone", "time_zone"}, {"send-condition", "send_condition"}, {"mode", "mode"},
	{"catch-up", "catch_up"}, {"notify-email", "notify_emails"},
	{"prefix-datetime", "prefix_file_name_with_datetime"}, {"csv-escape-formulas", "csv_escape_formulas"},
	{"integration", "destination"}, {"uri", "destination"},
}

func (f schFields) apply(e *env, s *pb.Schedule) error {
	setIfGiven(e, "name", &s.Name, f.Name)
	setIfGiven(e, "element", &s.ElementId, f.Element)
	setIfGiven(e, "cron", &s.Cron, f.Cron)
	setIfGiven(e, "time-zone", &s.TimeZone, f.TimeZone)
	setIfGiven(e, "notify-email", &s.NotifyEmails, f.NotifyEmail)
	setIfGiven(e, "prefix-datetime", &s.PrefixFileNameWithDatetime, f.PrefixDatetime)
	if e.given["csv-escape-formulas"] {
		s.CsvEscapeFormulas = proto.Bool(f.CSVEscapeFormulas)
	}
	if e.given["integration"] || e.given["uri"] {
		if s.Destination.GetCloudStorage() == nil {
			s.Destination = &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{}}
		}
		setIfGiven(e, "integration", &s.Destination.CloudStorage.StorageIntegrationName, f.Integration)
		setIfGiven(e, "uri", &s.Destination.CloudStorage.Uri, f.URI)
	}
	for _, err := range []error{
		enumFlag("format", f.Format, pb.Format(0).Descriptor(), &s.Format),
		enumFlag("compression", f.Compression, pb.Compression(0).Descriptor(), &s.Compression),
		enumFlag("send-condition", f.SendCondition, pb.SendCondition(0).Descriptor(), &s.SendCondition),
		enumFlag("mode", f.Mode, pb.ExportMode(0).Descriptor(), &s.Mode),
		enumFlag("catch-up", f.CatchUp, pb.CatchUp(0).Descriptor(), &s.CatchUp),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// formatFromURI guesses format and compression from the object name, which
// the server requires to agree anyway: x.csv.gz → CSV, GZIP.
func formatFromURI(uri string) (pb.Format, pb.Compression) {
	name := strings.ToLower(path.Base(uri))
	comp := pb.Compression_COMPRESSION_NONE
	for ext, c := range map[string]pb.Compression{".gz": pb.Compression_COMPRESSION_GZIP, ".zst": pb.Compression_COMPRESSION_ZSTD, ".zstd": pb.Compression_COMPRESSION_ZSTD} {
		if strings.HasSuffix(name, ext) {
			name, comp = strings.TrimSuffix(name, ext), c
		}
	}
	switch path.Ext(name) {
	case ".csv":
		return pb.Format_FORMAT_CSV, comp
	case ".jsonl", ".ndjson", ".json":
		return pb.Format_FORMAT_JSONL, comp
	case ".parquet":
		return pb.Format_FORMAT_PARQUET, pb.Compression_COMPRESSION_NONE
	}
	return pb.Format_FORMAT_UNSPECIFIED, pb.Compression_COMPRESSION_UNSPECIFIED
}

type schCreateCmd struct {
	fromFile
	Workbook string `name:"workbook" help:"Saved workbook id (wb_…)."`
	schFields
}

func (c *schCreateCmd) Run(e *env) error {
	req := &pb.CreateScheduleRequest{}
	if err := c.load(e, req); err != nil {
		return err
	}
	setIfGiven(e, "workbook", &req.WorkbookId, c.Workbook)
	if req.WorkbookId == "" {
		return usagef("--workbook is required")
	}
	if req.Schedule == nil {
		req.Schedule = &pb.Schedule{}
	}
	s := req.Schedule
	if err := c.apply(e, s); err != nil {
		return err
	}
	if s.TimeZone == "" {
		s.TimeZone = "UTC" // required by the API; a server-side default would hide the choice
	}
	f, comp := formatFromURI(s.GetDestination().GetCloudStorage().GetUri())
	if s.Format == pb.Format_FORMAT_UNSPECIFIED {
		s.Format = f
	}
	if s.Compression == pb.Compression_COMPRESSION_UNSPECIFIED && s.Format == f {
		s.Compression = comp
	}
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		if s.ElementId == "" {
			wb, err := cl.Workbooks.GetWorkbook(ctx, &pb.GetWorkbookRequest{Id: req.WorkbookId})
			if err != nil {
				return nil, err
			}
			el, err := pickElement(wb.GetWorkbook(), "")
			if err != nil {
				return nil, err
			}
			s.ElementId = el.GetId()
		}
		return cl.Schedules.CreateSchedule(ctx, req)
	})
}

type schListCmd struct {
	listFlags
	Workbook    string `name:"workbook" help:"Only schedules of this workbook (wb_…)."`
	Integration string `name:"integration" help:"Only schedules writing through this integration (int_…)."`
	State       string `name:"state" help:"active or paused."`
}

func (c *schListCmd) Run(e *env) error {
	req := &pb.ListSchedulesRequest{WorkbookId: c.Workbook, StorageIntegrationId: c.Integration}
	if err := enumFlag("state", c.State, pb.ScheduleState(0).Descriptor(), &req.State); err != nil {
		return err
	}
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		r := proto.Clone(req).(*pb.ListSchedulesRequest)
		r.PageSize, r.PageToken = c.PageSize, token
		return cl.Schedules.ListSchedules(ctx, r)
	})
}

type schGetCmd struct {
	ID string `arg:"" help:"Schedule id (sch_…)."`
}

func (c *schGetCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Schedules.GetSchedule(ctx, &pb.GetScheduleRequest{Id: c.ID})
	})
}

type schUpdateCmd struct {
	ID string `arg:"" help:"Schedule id (sch_…)."`
	fromFile
	schFields
}

func (c *schUpdateCmd) Run(e *env) error {
	req := &pb.UpdateScheduleRequest{}
	if err := c.load(e, req); err != nil {
		return err
	}
	if req.Schedule == nil {
		req.Schedule = &pb.Schedule{}
	}
	req.Schedule.Id = c.ID
	req.UpdateMask = e.updateMask(req.UpdateMask, scheduleMask...)
	if len(req.UpdateMask.GetPaths()) == 0 {
		return usagef("nothing to update: give a field flag (see --help) or --from-file")
	}
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		if e.given["integration"] != e.given["uri"] && req.Schedule.GetDestination().GetCloudStorage() == nil {
			// The destination changes as a whole: keep the half not given.
			cur, err := cl.Schedules.GetSchedule(ctx, &pb.GetScheduleRequest{Id: c.ID})
			if err != nil {
				return nil, err
			}
			req.Schedule.Destination = cur.GetSchedule().GetDestination()
		}
		if err := c.apply(e, req.Schedule); err != nil {
			return nil, err
		}
		return cl.Schedules.UpdateSchedule(ctx, req)
	})
}

type schDeleteCmd struct {
	ID string `arg:"" help:"Schedule id (sch_…)."`
}

func (c *schDeleteCmd) Run(e *env) error {
	err := e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Schedules.DeleteSchedule(ctx, &pb.DeleteScheduleRequest{Id: c.ID})
	})
	if err == nil && e.out.kind == outTable {
		e.notef("deleted schedule %s", c.ID)
	}
	return err
}

type schPauseCmd struct {
	ID string `arg:"" help:"Schedule id (sch_…)."`
}

func (c *schPauseCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Schedules.PauseSchedule(ctx, &pb.PauseScheduleRequest{Id: c.ID})
	})
}

type schResumeCmd struct {
	ID string `arg:"" help:"Schedule id (sch_…)."`
}

func (c *schResumeCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Schedules.ResumeSchedule(ctx, &pb.ResumeScheduleRequest{Id: c.ID})
	})
}

type schPreviewCmd struct {
	Cron     string `name:"cron" required:"" help:"5-field cron, e.g. '30 2 * * *'."`
	TimeZone string `name:"time-zone" default:"UTC" help:"IANA time zone, e.g. Europe/Berlin."`
	Count    int32  `name:"count" default:"5" help:"How many run times (1-50)."`
}

func (c *schPreviewCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Schedules.PreviewSchedule(ctx, &pb.PreviewScheduleRequest{Cron: c.Cron, TimeZone: c.TimeZone, Count: c.Count})
	})
}

type schSendNowCmd struct {
	ID string `arg:"" help:"Schedule id (sch_…)."`
	progressFlags
}

func (c *schSendNowCmd) Run(e *env) error {
	cl, err := e.api()
	if err != nil {
		return err
	}
	v := e.newView(c.Progress)
	run, err := cl.SendNow(e.ctx, c.ID, v.update)
	return e.finishFollow(v, run, err)
}
