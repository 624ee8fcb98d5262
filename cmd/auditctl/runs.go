package main

import (
	"context"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type runsCmd struct {
	List   runListCmd   `cmd:"" aliases:"ls" help:"Run history, newest first: a schedule's, or the organization's (--since 24h --state failed)."`
	Get    runGetCmd    `cmd:"" help:"Show one run: state, rows, bytes, checksum, error."`
	Watch  runWatchCmd  `cmd:"" help:"Follow a run until it ends (from any replica); exits 1 if it ends FAILED or CANCELED."`
	Cancel runCancelCmd `cmd:"" help:"Cancel a queued or running export; no object is left behind."`
}

type runListCmd struct {
	Schedule string        `arg:"" optional:"" help:"Schedule id (sch_…); without it, every run of the organization."`
	Since    time.Duration `name:"since" help:"Only runs created within this long before now, e.g. 24h."`
	State    string        `name:"state" enum:",queued,running,succeeded,failed,canceled,skipped" default:"" help:"Only runs in this state (queued, running, succeeded, failed, canceled, skipped)."`
	Trigger  string        `name:"trigger" enum:",scheduled,send_now,retry" default:"" help:"Only runs started this way (scheduled, send_now, retry)."`
	listFlags
}

func (c *runListCmd) Run(e *env) error {
	req := &pb.ListExportRunsRequest{ScheduleId: c.Schedule, PageSize: c.PageSize}
	if c.State != "" {
		req.State = pb.RunState(pb.RunState_value["RUN_STATE_"+strings.ToUpper(c.State)])
	}
	if c.Trigger != "" {
		req.Trigger = pb.Trigger(pb.Trigger_value["TRIGGER_"+strings.ToUpper(c.Trigger)])
	}
	if c.Since > 0 {
		req.Since = timestamppb.New(time.Now().Add(-c.Since))
	}
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		r := proto.CloneOf(req)
		r.PageToken = token
		return cl.Schedules.ListExportRuns(ctx, r)
	})
}

type runGetCmd struct {
	ID string `arg:"" help:"Run id (run_…)."`
}

func (c *runGetCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Schedules.GetExportRun(ctx, &pb.GetExportRunRequest{Id: c.ID})
	})
}

type runWatchCmd struct {
	ID string `arg:"" help:"Run id (run_…)."`
	progressFlags
}

func (c *runWatchCmd) Run(e *env) error {
	cl, err := e.api()
	if err != nil {
		return err
	}
	v := e.newView(c.Progress)
	run, err := cl.WatchExportRun(e.ctx, c.ID, v.update)
	return e.finishFollow(v, run, err)
}

type runCancelCmd struct {
	ID string `arg:"" help:"Run id (run_…)."`
}

func (c *runCancelCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Schedules.CancelExportRun(ctx, &pb.CancelExportRunRequest{Id: c.ID})
	})
}
