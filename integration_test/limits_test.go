package integration_test

// Bounded work per caller (issue 9, items 7 and 9): concurrent Send now
// limits, notify_emails restricted to the organization, one failure mail per
// streak, request-body deadlines and a bounded audit trail for floods of
// failed authentications.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// hangingS3 is an "S3 endpoint" that accepts connections and never answers:
// a run uploading to it stays RUNNING until the server stops.
func hangingS3(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "http://" + l.Addr().String()
}

// mustAs calls an RPC over gRPC as key and fails the test unless it is OK.
func mustAs(t *testing.T, s *Server, key, rpc, req string) map[string]any {
	t.Helper()
	r := grpcTransport{s}.Call(t, rpc, key, req, "")
	if r.Code != codes.OK {
		t.Fatalf("%s %s: %v %s", rpc, req, r.Code, r.Message)
	}
	return r.Body
}

// limSchedule makes an S3 integration on endpoint and a schedule exporting
// AUDIT_LOGS to it, as key; it returns the schedule id and workbook id.
func limSchedule(t *testing.T, s *Server, key, name, endpoint, accessKey, secret string) (schID, wbID string) {
	t.Helper()
	mustAs(t, s, key, "CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":"PROVIDER_S3",
		"destination":"s3://%s/exports/","endpoint":%q,"region":"us-east-1","credentials":{"awsAccessKey":{"accessKeyId":%q,"secretAccessKey":%q}}}}`,
		name, name, endpoint, accessKey, secret))
	ex := mustAs(t, s, key, "ExploreTable", `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`)
	wbID = getString(ex, "workbook", "id")
	el := getPath(ex, "workbook", "elements").([]any)[0].(map[string]any)["id"].(string)
	mustAs(t, s, key, "SaveWorkbookAs", fmt.Sprintf(`{"id":%q,"name":"wb-%s"}`, wbID, name))
	b := mustAs(t, s, key, "CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":%q,"elementId":%q,"format":"FORMAT_CSV",
		"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":"s3://%s/exports/x-{run_id}.csv"}},
		"cron":"0 0 1 1 *","timeZone":"UTC"}}`, wbID, name, el, name, name))
	return getString(b, "schedule", "id"), wbID
}

// createOrg runs `auditexport org create` and returns the new admin's key.
func createOrg(t *testing.T, s *Server, name string) string {
	t.Helper()
	out, err := exec.Command(toolPath, "org", "create", "--name", name, "--db", s.DSN).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("org create: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("org create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// burstSendNow starts n Send nows at once (spread over servers) and returns
// how many started per server, and the refusals.
func burstSendNow(t *testing.T, servers []*Server, key, schID string, n int) (started []int, refused []*status.Status) {
	t.Helper()
	started = make([]int, len(servers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			srv := i % len(servers)
			ctx, cancel := context.WithTimeout(Ctx(key), time.Minute)
			defer cancel() // the run carries on without its caller
			<-gate
			st, err := pb.NewScheduleServiceClient(servers[srv].Conn).SendNow(ctx, &pb.SendNowRequest{Id: schID})
			if err == nil {
				_, err = st.Recv()
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				started[srv]++
				return
			}
			refused = append(refused, status.Convert(err))
		}(i)
	}
	close(gate)
	wg.Wait()
	return started, refused
}

// checkRefusals: every refusal is RESOURCE_EXHAUSTED with the reason and a
// RetryInfo.
func checkRefusals(t *testing.T, refused []*status.Status, reason string) {
	t.Helper()
	for _, st := range refused {
		var gotReason string
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				gotReason = d.GetReason()
			case *errdetails.RetryInfo:
				retry = d
			}
		}
		if st.Code() != codes.ResourceExhausted || gotReason != reason || retry.GetRetryDelay().AsDuration() <= 0 {
			t.Errorf("refused Send now: %v %q reason %q retry %v, want RESOURCE_EXHAUSTED %s with a RetryInfo", st.Code(), st.Message(), gotReason, retry, reason)
		}
	}
}

// TestSendNowConcurrencyLimits: 40 Send nows at once start only as many
// runs as the per-organization limit (across replicas on PostgreSQL), then
// the per-server limit bites for a second organization; the rest are
// RESOURCE_EXHAUSTED with a RetryInfo, over gRPC and REST (429).
func TestSendNowConcurrencyLimits(t *testing.T) {
	t.Parallel()
	raceTest(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			flags := []string{"--max-manual-runs-per-org", "4", "--max-manual-runs", "6"}
			s := StartServer(t, backend, flags...)
			servers := []*Server{s}
			if backend == "postgres" {
				servers = append(servers, s.Replica(t, flags...))
			}
			endpoint := hangingS3(t) // runs stay RUNNING: nothing finishes during the test
			schA, _ := limSchedule(t, s, s.AdminKey, "lima", endpoint, "AKIAEXAMPLE", "x")
			startedA, refusedA := burstSendNow(t, servers, s.AdminKey, schA, 40)
			total := 0
			for _, n := range startedA {
				total += n
			}
			if total != 4 || len(refusedA) != 36 {
				t.Fatalf("org A: %v runs started (per server), %d refused; want 4 started in all", startedA, len(refusedA))
			}
			checkRefusals(t, refusedA, "MANUAL_RUN_LIMIT_ORG")

			// REST: the same refusal as 429 with RetryInfo.
			code, body, _ := s.REST(http.MethodPost, "/v1/schedules/"+schA+":sendNow", s.AdminKey, "{}")
			raw, _ := json.Marshal(body)
			if code != http.StatusTooManyRequests || !strings.Contains(string(raw), "google.rpc.RetryInfo") || !strings.Contains(string(raw), "MANUAL_RUN_LIMIT_ORG") {
				t.Errorf("REST Send now over the limit: %d %s", code, raw)
			}

			// Orgs B and C on the first server only: their own limits (4 each)
			// leave room, this process's (6) does not. Which replica took
			// org A's runs varies, so B may stop at its own limit; C, started
			// after B on the same process, always meets the server limit.
			keyB := createOrg(t, s, "limb")
			schB, _ := limSchedule(t, s, keyB, "limb", endpoint, "AKIAEXAMPLE", "x")
			startedB, _ := burstSendNow(t, []*Server{s}, keyB, schB, 40)
			keyC := createOrg(t, s, "limc")
			schC, _ := limSchedule(t, s, keyC, "limc", endpoint, "AKIAEXAMPLE", "x")
			startedC, refusedC := burstSendNow(t, []*Server{s}, keyC, schC, 40)
			if got := startedA[0] + startedB[0] + startedC[0]; got != 6 || startedB[0] > 4 {
				t.Fatalf("first server runs: org A %d + org B %d + org C %d = %d, want 6 (--max-manual-runs), B at most 4", startedA[0], startedB[0], startedC[0], got)
			}
			checkRefusals(t, refusedC, "MANUAL_RUN_LIMIT_SERVER")
		})
	}
}

// TestNotifyEmailsRestricted: notify_emails may name the organization's
// users and addresses in --notify-allowed-domains only (create and update,
// gRPC and REST).
func TestNotifyEmailsRestricted(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite", "--notify-allowed-domains", "partner.example")
	intID, schID := localSchedule(t, s, "notif")
	_ = intID
	sc := mustAs(t, s, s.AdminKey, "GetSchedule", fmt.Sprintf(`{"id":%q}`, schID))
	wbID := getString(sc, "schedule", "workbookId")
	el := getString(sc, "schedule", "elementId")
	dest := getString(sc, "schedule", "destination", "cloudStorage", "uri")
	create := func(name string, emails ...string) string {
		nj, _ := json.Marshal(emails)
		return fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":%q,"elementId":%q,"format":"FORMAT_CSV",
			"destination":{"cloudStorage":{"storageIntegrationName":"notif","uri":%q}},"cron":"0 0 1 1 *","timeZone":"UTC","notifyEmails":%s}}`,
			wbID, name, el, dest, nj)
	}
	update := func(emails ...string) string {
		nj, _ := json.Marshal(emails)
		return fmt.Sprintf(`{"schedule":{"id":%q,"notifyEmails":%s},"updateMask":"notifyEmails"}`, schID, nj)
	}
	for _, tr := range transports(s) {
		t.Run(tr.Name(), func(t *testing.T) {
			for _, c := range []struct {
				rpc, req, field string
			}{
				{"CreateSchedule", create("out-"+tr.Name(), "admin@example.com", "victim@elsewhere.test"), "schedule.notify_emails[1]"},
				{"CreateSchedule", create("sub-"+tr.Name(), "x@sub.partner.example"), "schedule.notify_emails[0]"},
				{"UpdateSchedule", update("ADMIN@example.com", "partner@partner.example", "victim@elsewhere.test"), "schedule.notify_emails[2]"},
			} {
				r := tr.Call(t, c.rpc, s.AdminKey, c.req, "")
				if r.Code != codes.InvalidArgument || len(r.Violations) != 1 || r.Violations[0] != c.field {
					t.Errorf("%s %s: %v %v %s, want INVALID_ARGUMENT naming %s", c.rpc, c.req, r.Code, r.Violations, r.Message, c.field)
				}
			}
			// A user of the organization (any case) and an allowed domain pass.
			if r := tr.Call(t, "CreateSchedule", s.AdminKey, create("ok-"+tr.Name(), "Admin@Example.com", "ops@PARTNER.example"), ""); r.Code != codes.OK {
				t.Errorf("allowed recipients refused: %v %s", r.Code, r.Message)
			}
			if r := tr.Call(t, "UpdateSchedule", s.AdminKey, update("admin@example.com", "ops@partner.example"), ""); r.Code != codes.OK {
				t.Errorf("allowed recipients refused on update: %v %s", r.Code, r.Message)
			}
		})
	}
}

// TestFailureMailOncePerStreak: three failed runs in a row send one mail; a
// success ends the streak and the next failure mails again. Every failure
// stays in the run history.
func TestFailureMailOncePerStreak(t *testing.T) {
	t.Parallel()
	mp := testenv.StartMailpit(t)
	minio := testenv.StartMinIO(t)
	s := StartServer(t, "sqlite", "--smtp-url", mp.SMTPURL)
	minio.CreateBucket(t, "streakbad")
	minio.CreateBucket(t, "streakgood")
	schID, _ := limSchedule(t, s, s.AdminKey, "streakbad", minio.Endpoint, minio.AccessKey, "not-the-secret")
	mustAs(t, s, s.AdminKey, "CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"streakgood","provider":"PROVIDER_S3",
		"destination":"s3://streakgood/exports/","endpoint":%q,"region":"us-east-1","credentials":{"awsAccessKey":{"accessKeyId":%q,"secretAccessKey":%q}}}}`,
		minio.Endpoint, minio.AccessKey, minio.SecretKey))
	point := func(integ string) {
		mustAs(t, s, s.AdminKey, "UpdateSchedule", fmt.Sprintf(`{"schedule":{"id":%q,"destination":{"cloudStorage":{"storageIntegrationName":%q,
			"uri":"s3://%s/exports/x-{run_id}.csv"}}},"updateMask":"destination"}`, schID, integ, integ))
	}
	failMails := func() int {
		n := 0
		for _, m := range mp.Messages(t) {
			if strings.HasPrefix(m.Subject, "[auditexport] Export failed: streakbad") {
				n++
			}
		}
		return n
	}
	runState := func(id string) string {
		return getString(mustAs(t, s, s.AdminKey, "GetExportRun", fmt.Sprintf(`{"id":%q}`, id)), "run", "state")
	}
	// The failure mail is handed to SMTP before the run's terminal report.
	for i := 0; i < 3; i++ {
		if st := runState(sendNowToEnd(t, s, s.AdminKey, schID)); st != "RUN_STATE_FAILED" {
			t.Fatalf("run %d: %s, want FAILED", i, st)
		}
	}
	mp.WaitFor(t, func(m testenv.Message) bool { return strings.HasPrefix(m.Subject, "[auditexport] Export failed") }, 20*time.Second)
	if n := failMails(); n != 1 {
		t.Fatalf("%d failure mails after a streak of 3 failures, want 1", n)
	}
	point("streakgood")
	if st := runState(sendNowToEnd(t, s, s.AdminKey, schID)); st != "RUN_STATE_SUCCEEDED" {
		t.Fatalf("run with good credentials: %s", st)
	}
	point("streakbad")
	if st := runState(sendNowToEnd(t, s, s.AdminKey, schID)); st != "RUN_STATE_FAILED" {
		t.Fatalf("run after the success: %s, want FAILED", st)
	}
	deadline := time.Now().Add(20 * time.Second)
	for failMails() < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := failMails(); n != 2 {
		t.Fatalf("%d failure mails after fail x3, success, fail; want 2", n)
	}
	runs := mustAs(t, s, s.AdminKey, "ListExportRuns", fmt.Sprintf(`{"scheduleId":%q}`, schID))
	failed := 0
	for _, r := range runs["runs"].([]any) {
		if r.(map[string]any)["state"] == "RUN_STATE_FAILED" {
			failed++
		}
	}
	if failed != 4 {
		t.Errorf("run history holds %d FAILED runs, want 4", failed)
	}
}

// TestSlowBodyCut: a client that sends the headers and trickles the body is
// answered 408 once --http-read-timeout passes, without waiting for the
// rest; a REST SendNow stream outlives the read timeout.
func TestSlowBodyCut(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite", "--http-read-timeout", "2s")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.HTTPURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const bodyLen = 300
	fmt.Fprintf(conn, "POST /v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", s.AdminKey, bodyLen)
	var sent sync.WaitGroup
	sent.Add(1)
	stop := make(chan struct{})
	var n int
	go func() {
		defer sent.Done()
		for ; n < bodyLen; n++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond): // 30 s for the whole body
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	close(stop)
	sent.Wait()
	if err != nil {
		t.Fatalf("no response to a trickled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || n >= bodyLen {
		t.Fatalf("trickled body: status %d after %d of %d bytes; want 408 before the body was complete", resp.StatusCode, n, bodyLen)
	}

	// Streams are not cut by the body deadline: a Send now to an endpoint
	// that never answers, watched over REST past the read timeout, still
	// reports its cancellation.
	endpoint := hangingS3(t)
	schID, _ := limSchedule(t, s, s.AdminKey, "slowstream", endpoint, "AKIAEXAMPLE", "x")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer scancel()
	rs := testenv.RESTStream(t, sctx, s.HTTPURL, http.MethodPost, "/v1/schedules/"+schID+":sendNow", s.AdminKey, "{}")
	runID := rs.RunID()
	if runID == "" {
		t.Fatalf("first line without a run id: %v", rs.Last())
	}
	time.Sleep(3 * time.Second) // past --http-read-timeout
	mustAs(t, s, s.AdminKey, "CancelExportRun", fmt.Sprintf(`{"id":%q}`, runID))
	msgs, err := rs.Wait()
	if last := msgs[len(msgs)-1].P; err != nil || last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_CANCELED {
		t.Fatalf("REST stream after the read timeout ended with %v (err %v), want the CANCELED report", last, err)
	}
}

// TestAuthFailureFlood: 500 requests with bad keys leave a bounded number
// of AUDIT_LOGS rows whose counts add up to 500, and the source IP is
// throttled with RESOURCE_EXHAUSTED (gRPC) / 429 (REST) and a RetryInfo.
func TestAuthFailureFlood(t *testing.T) {
	t.Parallel()
	const perMinute, rows, flood = 100, 10, 500
	s := StartServer(t, "sqlite", "--auth-failures-per-minute", fmt.Sprint(perMinute), "--auth-failure-audit-rows", fmt.Sprint(rows))
	cl := pb.NewAccountServiceClient(s.Conn)
	bad := s.AdminKey[:len(s.AdminKey)-4] + "zzzz"
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var res string
				if i%2 == 0 {
					ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+bad), 30*time.Second)
					_, err := cl.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
					cancel()
					st := status.Convert(err)
					res = "grpc " + st.Code().String()
					for _, d := range st.Details() {
						if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
							res += " retry"
						}
					}
				} else {
					req, _ := http.NewRequest(http.MethodGet, s.HTTPURL+"/v1/users/me", nil)
					req.Header.Set("Authorization", "Bearer not-a-key")
					resp, err := testenv.HTTP.Do(req)
					if err != nil {
						res = "rest error"
					} else {
						raw, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						res = fmt.Sprintf("rest %d", resp.StatusCode)
						if strings.Contains(string(raw), "google.rpc.RetryInfo") {
							res += " retry"
						}
					}
				}
				mu.Lock()
				got[res]++
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < flood; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("answers: %v", got)
	unauth := got["grpc Unauthenticated"] + got["rest 401"]
	if unauth < perMinute || unauth > 2*perMinute || got["grpc ResourceExhausted retry"] == 0 || got["rest 429 retry"] == 0 ||
		unauth+got["grpc ResourceExhausted retry"]+got["rest 429 retry"] != flood {
		t.Fatalf("answers %v: want about %d UNAUTHENTICATED, then RESOURCE_EXHAUSTED/429 with RetryInfo", got, perMinute)
	}
	// Summaries of the open window are written at shutdown.
	s.Stop()
	db := s.OpenDB()
	q, err := db.Query("SELECT metadata FROM audit_logs WHERE event_type = 'API_KEY_AUTH'")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	n, counted := 0, 0
	for q.Next() {
		var raw string
		if err := q.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var m struct {
			Suppressed int  `json:"suppressed_failures"`
			Aggregated bool `json:"aggregated"`
		}
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("metadata %q: %v", raw, err)
		}
		n++
		counted += m.Suppressed
		if !m.Aggregated {
			counted++
		}
	}
	// One window (a minute) holds the flood unless the machine is very slow:
	// allow three.
	if n > 3*(rows+1) || counted != flood {
		t.Fatalf("%d API_KEY_AUTH rows accounting for %d failures; want at most %d rows accounting for all %d", n, counted, 3*(rows+1), flood)
	}
}

// TestSendNowSlotFreedWithTheRun: this process's Send now slots
// (--max-manual-runs, counted in memory) are given back before a run's
// final message goes out, however it ends: a client that saw its run
// succeed, or be canceled, starts the next at once, and a run holding the
// only slot refuses another with MANUAL_RUN_LIMIT_SERVER.
func TestSendNowSlotFreedWithTheRun(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend, "--max-manual-runs", "1", "--max-manual-runs-per-org", "0")
			_, local := localSchedule(t, s, "slot")
			sched := pb.NewScheduleServiceClient(s.Conn)
			ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 2*time.Minute)
			defer cancel()
			sendNow := func(id string) *testenv.RunStream { return testenv.SendNow(t, ctx, sched, id) }
			succeeded := func(what string, st *testenv.RunStream) {
				t.Helper()
				msgs, err := st.Wait()
				if err != nil || len(msgs) == 0 || msgs[len(msgs)-1].P.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
					t.Fatalf("%s: %v %v", what, err, msgs)
				}
			}
			for i := range 6 {
				succeeded(fmt.Sprintf("Send now %d right after the previous run ended", i), sendNow(local))
			}

			hanging, _ := limSchedule(t, s, s.AdminKey, "slotb", hangingS3(t), "AKIAEXAMPLE", "x")
			held := sendNow(hanging)
			runID := held.RunID()
			if runID == "" {
				t.Fatalf("Send now to the hanging store: no run: %v", held.Err())
			}
			_, err := sendNow(local).Wait()
			checkRefusals(t, []*status.Status{status.Convert(err)}, "MANUAL_RUN_LIMIT_SERVER")
			if _, err := sched.CancelExportRun(ctx, &pb.CancelExportRunRequest{Id: runID}); err != nil {
				t.Fatalf("cancel %s: %v", runID, err)
			}
			if end := held.Terminal(time.Minute); end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_CANCELED {
				t.Fatalf("held run ended %v, want CANCELED", end.GetPhase())
			}
			succeeded("Send now right after a canceled run", sendNow(local))
		})
	}
}
