package auditexport_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/app"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/config"
)

type testServer struct {
	addr    string
	dataDir string
	key     string
}

// startServer runs the whole server in-process on loopback listeners.
func startServer(t *testing.T) *testServer {
	t.Helper()
	dir := t.TempDir()
	key, _, _ := auth.NewAPIKey()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{
		GRPCAddr:            gl.Addr().String(),
		HTTPAddr:            hl.Addr().String(),
		DataDir:             dir,
		DB:                  "sqlite://" + filepath.Join(dir, "a.db"),
		BootstrapAdminKey:   key,
		BootstrapAdminEmail: "admin@example.com",
		MailFrom:            "auditexport@localhost",
		LogLevel:            "info",
		LogFormat:           "json",
		Scheduler:           true,
		ShutdownGrace:       5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(ctx, cfg, app.Options{
			GRPCListener: gl, HTTPListener: hl,
			Stdout: &discard{}, Logger: slog.New(slog.DiscardHandler),
			Ready: func(string, string) { close(ready) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("app.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("app.Run did not return after cancel")
		}
	})
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("app.Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready")
	}
	return &testServer{addr: gl.Addr().String(), dataDir: dir, key: key}
}

type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }

func dial(t *testing.T, addr, key string, opts ...auditexport.Option) *auditexport.Client {
	t.Helper()
	c, err := auditexport.Dial(context.Background(), addr, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestClientAgainstServer(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("GetCurrentUser", func(t *testing.T) {
		c := dial(t, srv.addr, srv.key)
		me, err := c.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
		if err != nil {
			t.Fatalf("GetCurrentUser: %v", err)
		}
		if got := me.GetUser().GetEmail(); got != "admin@example.com" {
			t.Errorf("email = %q, want admin@example.com", got)
		}
	})

	t.Run("WrongKey", func(t *testing.T) {
		wrong, _, _ := auth.NewAPIKey()
		c := dial(t, srv.addr, wrong, auditexport.WithRetry(1, time.Millisecond))
		_, err := c.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("GetCurrentUser with a wrong key: %v, want Unauthenticated", err)
		}
	})

	t.Run("SendNow", func(t *testing.T) {
		c := dial(t, srv.addr, srv.key)
		me, err := c.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
		if err != nil {
			t.Fatalf("GetCurrentUser: %v", err)
		}
		// Each organization's LOCAL destinations lie under <local-root>/<org id>/.
		dest := "file://" + filepath.Join(srv.dataDir, "exports", me.GetUser().GetOrganizationId(), "x") + "/"
		in, err := c.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
			StorageIntegration: &pb.StorageIntegration{Name: "local", Provider: pb.Provider_PROVIDER_LOCAL, Destination: dest}})
		if err != nil {
			t.Fatalf("create integration: %v", err)
		}
		ex, err := c.Workbooks.ExploreTable(ctx, &pb.ExploreTableRequest{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"})
		if err != nil {
			t.Fatalf("explore: %v", err)
		}
		wb, err := c.Workbooks.SaveWorkbookAs(ctx, &pb.SaveWorkbookAsRequest{Id: ex.GetWorkbook().GetId(), Name: "wb", Folder: "f"})
		if err != nil {
			t.Fatalf("save workbook: %v", err)
		}
		sc, err := c.Schedules.CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: wb.GetWorkbook().GetId(),
			Schedule: &pb.Schedule{Name: "s", ElementId: wb.GetWorkbook().GetElements()[0].GetId(),
				Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{
					StorageIntegrationName: in.GetStorageIntegration().GetName(), Uri: dest + "{run_id}.csv"}},
				Format: pb.Format_FORMAT_CSV, Compression: pb.Compression_COMPRESSION_NONE,
				Mode: pb.ExportMode_EXPORT_MODE_SNAPSHOT, Cron: "0 0 1 1 *", TimeZone: "UTC"}})
		if err != nil {
			t.Fatalf("create schedule: %v", err)
		}
		var msgs []*pb.ExportProgress
		run, err := c.SendNow(ctx, sc.GetSchedule().GetId(), func(p *pb.ExportProgress) { msgs = append(msgs, p) })
		if err != nil {
			t.Fatalf("SendNow: %v", err)
		}
		if run.GetState() != pb.RunState_RUN_STATE_SUCCEEDED {
			t.Fatalf("run = %v, want SUCCEEDED", run)
		}
		if len(msgs) == 0 || msgs[len(msgs)-1].GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
			t.Fatalf("progress messages %v: want a terminal SUCCEEDED message last", msgs)
		}
		if msgs[0].GetRunId() != run.GetId() {
			t.Errorf("progress run id %q != run id %q", msgs[0].GetRunId(), run.GetId())
		}

		// Watching the finished run answers with its terminal message at once.
		var watched []*pb.ExportProgress
		again, err := c.WatchExportRun(ctx, run.GetId(), func(p *pb.ExportProgress) { watched = append(watched, p) })
		if err != nil {
			t.Fatalf("WatchExportRun: %v", err)
		}
		if again.GetId() != run.GetId() || again.GetState() != pb.RunState_RUN_STATE_SUCCEEDED {
			t.Errorf("WatchExportRun returned %v, want the SUCCEEDED run %s", again, run.GetId())
		}
		if len(watched) != 1 || !auditexport.Terminal(watched[0].GetPhase()) {
			t.Errorf("WatchExportRun of a finished run streamed %v, want one terminal message", watched)
		}
	})
}

// flakyAccounts fails GetCurrentUser twice with Unavailable, then succeeds;
// CreateUser always fails with Unavailable. It counts calls.
type flakyAccounts struct {
	pb.UnimplementedAccountServiceServer
	getCalls, createCalls atomic.Int32
	auth                  atomic.Value // last authorization header seen
}

func (f *flakyAccounts) GetCurrentUser(ctx context.Context, _ *pb.GetCurrentUserRequest) (*pb.GetCurrentUserResponse, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		f.auth.Store(md.Get("authorization")[0])
	}
	if f.getCalls.Add(1) <= 2 {
		return nil, status.Error(codes.Unavailable, "try again")
	}
	return &pb.GetCurrentUserResponse{User: &pb.User{Email: "stub@example.com"}}, nil
}

func (f *flakyAccounts) CreateUser(context.Context, *pb.CreateUserRequest) (*pb.CreateUserResponse, error) {
	f.createCalls.Add(1)
	return nil, status.Error(codes.Unavailable, "try again")
}

// stubClient serves the services register adds on an in-memory listener
// and dials it with opts (after fast retries).
func stubClient(t *testing.T, register func(*grpc.Server), opts ...auditexport.Option) *auditexport.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return dial(t, "passthrough:///bufnet", "aek_test", append([]auditexport.Option{auditexport.WithRetry(4, time.Millisecond),
		auditexport.WithDialOptions(
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))}, opts...)...)
}

func TestRetries(t *testing.T) {
	fake := &flakyAccounts{}
	c := stubClient(t, func(gs *grpc.Server) { pb.RegisterAccountServiceServer(gs, fake) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	me, err := c.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
	if err != nil {
		t.Fatalf("GetCurrentUser: %v", err)
	}
	if me.GetUser().GetEmail() != "stub@example.com" {
		t.Errorf("user = %v", me.GetUser())
	}
	if n := fake.getCalls.Load(); n != 3 {
		t.Errorf("GetCurrentUser calls = %d, want 3", n)
	}
	if got, _ := fake.auth.Load().(string); got != "Bearer aek_test" {
		t.Errorf("authorization = %q, want %q", got, "Bearer aek_test")
	}

	_, err = c.Accounts.CreateUser(ctx, &pb.CreateUserRequest{User: &pb.User{Email: "x@example.com"}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("CreateUser: %v, want Unavailable", err)
	}
	if n := fake.createCalls.Load(); n != 1 {
		t.Errorf("CreateUser calls = %d, want exactly 1 (no retry of a non-idempotent call)", n)
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	fake := &flakyAccounts{}
	c := stubClient(t, func(gs *grpc.Server) { pb.RegisterAccountServiceServer(gs, fake) }, auditexport.WithRetry(2, time.Millisecond))
	_, err := c.Accounts.GetCurrentUser(context.Background(), &pb.GetCurrentUserRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetCurrentUser: %v, want Unavailable after 2 attempts", err)
	}
	if n := fake.getCalls.Load(); n != 2 {
		t.Errorf("GetCurrentUser calls = %d, want 2", n)
	}
}

// brokenStreams is a ScheduleService whose SendNow stream breaks after one
// message and whose WatchExportRun is UNAVAILABLE for the first failWatch
// calls (a restarting server), then reports the run SUCCEEDED.
type brokenStreams struct {
	pb.UnimplementedScheduleServiceServer
	failWatch   int32
	watchCalls  atomic.Int32
	sendNowRuns atomic.Int32
}

func (b *brokenStreams) SendNow(_ *pb.SendNowRequest, st grpc.ServerStreamingServer[pb.SendNowResponse]) error {
	b.sendNowRuns.Add(1)
	_ = st.Send(&pb.SendNowResponse{Progress: &pb.ExportProgress{RunId: "run_1", Phase: pb.ExportPhase_EXPORT_PHASE_UPLOADING, RowsExported: 10}})
	return status.Error(codes.Unavailable, "server going away")
}

func (b *brokenStreams) WatchExportRun(_ *pb.WatchExportRunRequest, st grpc.ServerStreamingServer[pb.WatchExportRunResponse]) error {
	if b.watchCalls.Add(1) <= b.failWatch {
		return status.Error(codes.Unavailable, "still restarting")
	}
	return st.Send(&pb.WatchExportRunResponse{Progress: &pb.ExportProgress{RunId: "run_1", Phase: pb.ExportPhase_EXPORT_PHASE_SUCCEEDED, RowsExported: 20}})
}

func (b *brokenStreams) GetExportRun(context.Context, *pb.GetExportRunRequest) (*pb.GetExportRunResponse, error) {
	return &pb.GetExportRunResponse{Run: &pb.ExportRun{Id: "run_1", State: pb.RunState_RUN_STATE_SUCCEEDED, Rows: 20}}, nil
}

func brokenStreamsClient(t *testing.T, fake *brokenStreams, opts ...auditexport.Option) *auditexport.Client {
	return stubClient(t, func(gs *grpc.Server) { pb.RegisterScheduleServiceServer(gs, fake) }, opts...)
}

// TestSendNowReattaches: a broken SendNow stream is followed with
// WatchExportRun for as long as the server stays unavailable within the
// follow timeout — more often than the unary retry count — and the run is
// never started twice.
func TestSendNowReattaches(t *testing.T) {
	fake := &brokenStreams{failWatch: 9}
	c := brokenStreamsClient(t, fake)
	var phases []pb.ExportPhase
	run, err := c.SendNow(context.Background(), "sch_1", func(p *pb.ExportProgress) { phases = append(phases, p.GetPhase()) })
	if err != nil {
		t.Fatalf("SendNow: %v", err)
	}
	if run.GetState() != pb.RunState_RUN_STATE_SUCCEEDED {
		t.Errorf("run = %v", run)
	}
	if n := fake.watchCalls.Load(); n != 10 {
		t.Errorf("WatchExportRun calls = %d, want 10 (9 unavailable, then the terminal message)", n)
	}
	if n := fake.sendNowRuns.Load(); n != 1 {
		t.Errorf("SendNow reached the server %d times, want 1", n)
	}
	if len(phases) != 2 || phases[1] != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Errorf("progress phases %v, want UPLOADING then SUCCEEDED", phases)
	}
}

// TestSendNowFollowTimeout: when the server stays away longer than the
// follow timeout, SendNow gives up with UNAVAILABLE and names the run.
func TestSendNowFollowTimeout(t *testing.T) {
	fake := &brokenStreams{failWatch: 1 << 30}
	c := brokenStreamsClient(t, fake, auditexport.WithFollowTimeout(100*time.Millisecond))
	start := time.Now()
	_, err := c.SendNow(context.Background(), "sch_1", nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "run_1") {
		t.Fatalf("SendNow: %v, want UNAVAILABLE naming run_1", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %s, want about the follow timeout", d)
	}
	if n := fake.watchCalls.Load(); n < 2 {
		t.Errorf("WatchExportRun calls = %d, want several attempts before giving up", n)
	}
}
