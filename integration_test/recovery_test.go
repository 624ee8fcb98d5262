package integration_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// TestBootstrapKeyFileAndRecovery: --bootstrap-admin-key-file writes the
// generated key to a 0600 file and never to the log; an operator with the
// database makes a new key for a locked-out admin with `admin key create`,
// and the organization's AUDIT_LOGS records it.
func TestBootstrapKeyFileAndRecovery(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
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
