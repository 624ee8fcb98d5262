package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// TestBootstrapKeyFileAndRecovery: --bootstrap-admin-key-file writes the
// generated key to a 0600 file and never to the log; an operator with the
// database makes a new key for a locked-out admin with `admin key create`,
// and the organization's AUDIT_LOGS records it.
func TestBootstrapKeyFileAndRecovery(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := &Server{t: t, Backend: backend, DataDir: t.TempDir()}
			s.DSN = "sqlite://" + filepath.Join(s.DataDir, "auditexport.db")
			if backend == "postgres" {
				s.DSN = createPGDatabase(t)
			}
			keyFile := filepath.Join(t.TempDir(), "admin.key")
			s.start("--bootstrap-admin-key-file", keyFile)
			data, err := os.ReadFile(keyFile)
			if err != nil {
				t.Fatalf("key file not written: %v\n%s", err, s.Logs())
			}
			if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
			}
			key := strings.TrimSpace(string(data))
			if strings.Contains(s.Logs(), key) || strings.Contains(s.Logs(), key[13:]) {
				t.Errorf("the bootstrap key appears in the server output")
			}
			me := must(s.Clients().Accounts.GetCurrentUser(Ctx(key), &pb.GetCurrentUserRequest{})).get(t)
			if me.GetUser().GetAccountType() != pb.AccountType_ACCOUNT_TYPE_ADMIN {
				t.Fatalf("key from the file belongs to %v", me.GetUser())
			}
			s.AdminKey = key

			// Operator recovery, while the server runs.
			out, err := exec.Command(toolPath, "admin", "key", "create", "--db", s.DSN, "--email", "admin@example.com").CombinedOutput()
			if err != nil {
				t.Fatalf("admin key create: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			recovered := lines[len(lines)-1]
			if recovered == key {
				t.Fatal("recovery printed the old key")
			}
			me2 := must(s.Clients().Accounts.GetCurrentUser(Ctx(recovered), &pb.GetCurrentUserRequest{})).get(t)
			if me2.GetUser().GetId() != me.GetUser().GetId() {
				t.Fatalf("recovered key belongs to %s, want %s", me2.GetUser().GetId(), me.GetUser().GetId())
			}
			db := s.OpenDB()
			var n int
			q := "SELECT count(*) FROM audit_logs WHERE event_type = 'CREATE_API_KEY' AND user_email = 'operator' AND account_type = 'OPERATOR' AND org_id = " + s.Placeholder(1)
			if err := db.QueryRow(q, me.GetUser().GetOrganizationId()).Scan(&n); err != nil || n != 1 {
				t.Fatalf("operator key creation audited %d times (%v), want 1", n, err)
			}
			// Unknown e-mails and non-admins are refused.
			if out, err := exec.Command(toolPath, "admin", "key", "create", "--db", s.DSN, "--email", "nobody@example.com").CombinedOutput(); err == nil ||
				!strings.Contains(string(out), "no user with e-mail") {
				t.Fatalf("recovery for an unknown e-mail: %v\n%s", err, out)
			}
		})
	}
}

// TestUndecryptableCredentials: a master key file whose key id is right but
// whose key is not (a wrong file restored) makes Test answer
// FAILED_PRECONDITION CREDENTIALS_UNDECRYPTABLE and a Send now run end
// FAILED with that code — never INTERNAL with the cause only in the log.
func TestUndecryptableCredentials(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend)
			ctx := Ctx(s.AdminKey)
			cl := s.Clients()
			in := must(cl.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{StorageIntegration: &pb.StorageIntegration{
				Name: "undecryptable", Provider: pb.Provider_PROVIDER_S3, Destination: "s3://bucket/audit/", Endpoint: "http://127.0.0.1:9",
				Credentials: &pb.StorageCredentials{Kind: &pb.StorageCredentials_AwsAccessKey{
					AwsAccessKey: &pb.AwsAccessKey{AccessKeyId: "AKIAEXAMPLE", SecretAccessKey: "secret-" + randHex(8)}}}}})).get(t)
			wbID, elID := savedElement(t, ctx, cl, time.Time{})
			schID := createSchedule(t, ctx, cl, wbID, elID, "undecryptable", "s3://bucket/audit/{run_id}.csv", pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_NONE, nil)

			s.Stop()
			keyFile := filepath.Join(s.DataDir, "master.key")
			data, err := os.ReadFile(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
					other := make([]byte, 32)
					_, _ = rand.Read(other)
					line = f[0] + " " + base64.StdEncoding.EncodeToString(other)
				}
				out = append(out, line)
			}
			if err := os.WriteFile(keyFile, []byte(strings.Join(out, "\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			s.start()

			cl = s.Clients()
			_, err = cl.Integrations.TestStorageIntegration(ctx, &pb.TestStorageIntegrationRequest{Id: in.GetStorageIntegration().GetId()})
			if res := resultOf(err); res.Code != codes.FailedPrecondition || res.Reason != "CREDENTIALS_UNDECRYPTABLE" || !strings.Contains(res.Message, "cannot be decrypted") {
				t.Fatalf("Test with a wrong master key: %+v; want FAILED_PRECONDITION CREDENTIALS_UNDECRYPTABLE", res)
			}
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			msgs := sendNow(t, sctx, cl, schID)
			last := msgs[len(msgs)-1].P
			if last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || last.GetError().GetCode() != "CREDENTIALS_UNDECRYPTABLE" ||
				!strings.Contains(last.GetError().GetMessage(), "master key") {
				t.Fatalf("Send now with a wrong master key ended %v %v; want FAILED CREDENTIALS_UNDECRYPTABLE", last.GetPhase(), last.GetError())
			}

			// The run-finished log line says which schedule, how it ended and
			// why, at WARN: the operator cannot fix it in a provider, but must see it.
			logRe := regexp.MustCompile(`"level":"WARN","msg":"export run finished"[^\n]*"error_code":"CREDENTIALS_UNDECRYPTABLE"`)
			// The runner publishes the terminal message before it logs, so
			// the line may trail the stream's end by a moment.
			line := ""
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if line = logRe.FindString(s.Logs()); line != "" || time.Now().After(deadline) {
					break
				}
			}
			if line == "" || !strings.Contains(line, `"schedule_id":"`+schID+`"`) || !strings.Contains(line, `"state":"FAILED"`) {
				t.Errorf("no WARN run-finished log line with schedule_id, state and error_code; got %q", line)
			}

			// "What happened yesterday?": the organization's runs, filtered.
			runIDs := func(req *pb.ListExportRunsRequest) []string {
				t.Helper()
				var ids []string
				for _, r := range must(cl.Schedules.ListExportRuns(ctx, req)).get(t).GetRuns() {
					ids = append(ids, r.GetId())
				}
				return ids
			}
			hourAgo := timestamppb.New(time.Now().Add(-time.Hour))
			if got := runIDs(&pb.ListExportRunsRequest{State: pb.RunState_RUN_STATE_FAILED, Since: hourAgo}); len(got) != 1 || got[0] != last.GetRunId() {
				t.Errorf("failed runs of the last hour: %v, want [%s]", got, last.GetRunId())
			}
			if got := runIDs(&pb.ListExportRunsRequest{State: pb.RunState_RUN_STATE_SUCCEEDED}); len(got) != 0 {
				t.Errorf("succeeded runs: %v, want none", got)
			}
			if got := runIDs(&pb.ListExportRunsRequest{Since: timestamppb.New(time.Now().Add(time.Hour))}); len(got) != 0 {
				t.Errorf("runs since an hour from now: %v, want none", got)
			}
			_, err = cl.Schedules.ListExportRuns(ctx, &pb.ListExportRunsRequest{Since: hourAgo, Until: hourAgo})
			if res := resultOf(err); res.Code != codes.InvalidArgument || len(res.Violations) != 1 || res.Violations[0] != "until" {
				t.Errorf("until == since: %+v, want INVALID_ARGUMENT naming until", res)
			}
			code, body, _ := s.REST("GET", "/v1/exportRuns?state=RUN_STATE_FAILED&trigger=TRIGGER_SEND_NOW&since="+hourAgo.AsTime().Format(time.RFC3339), s.AdminKey, nil)
			if code != 200 || !strings.Contains(fmt.Sprint(body), last.GetRunId()) {
				t.Errorf("REST GET /v1/exportRuns (%d): %v; want run %s", code, body, last.GetRunId())
			}
			ctlOut := newCtl(t, s).ok("runs", "list", "--since", "1h", "--state", "failed")
			mustContain(t, "auditctl runs list", ctlOut, last.GetRunId())
		})
	}
}
