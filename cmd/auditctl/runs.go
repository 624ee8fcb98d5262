package main

import (
	"context"

	"google.golang.org/protobuf/proto"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type runsCmd struct {
	List   runListCmd   `cmd:"" aliases:"ls" help:"A schedule's run history, newest first."`
	Get    runGetCmd    `cmd:"" help:"Show one run: state, rows, bytes, checksum, error."`
	Watch  runWatchCmd  `cmd:"" help:"Follow a run until it ends (from any replica); exits 1 if it ends FAILED or CANCELED."`
	Cancel runCancelCmd `cmd:"" help:"Cancel a queued or running export; no object is left behind."`
}

type runListCmd struct {
	Schedule string `arg:"" help:"Schedule id (sch_…)."`
	listFlags
}

func (c *runListCmd) Run(e *env) error {
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		return cl.Schedules.ListExportRuns(ctx, &pb.ListExportRunsRequest{ScheduleId: c.Schedule, PageSize: c.PageSize, PageToken: token})
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
