package integration_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// attempts counts the RPCs that actually leave the client, per method. It
// sits inside the client's retry interceptor, so every retry is one more.
type attempts struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *attempts) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	a.mu.Lock()
	a.n[method[strings.LastIndex(method, "/")+1:]]++
	a.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (a *attempts) get(method string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[method]
}

func (a *attempts) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n = map[string]int{}
}

// TestGoClientRetriesAcrossRestart stops the real server process and starts
// it again on the same address: a read issued while it is down is retried
// until the new process answers; a write issued while it is down is tried
// exactly once and fails UNAVAILABLE, and is not replayed later.
func TestGoClientRetriesAcrossRestart(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	addr := s.GRPCAddr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	count := &attempts{n: map[string]int{}}
	c, err := auditexport.Dial(ctx, addr, s.AdminKey,
		auditexport.WithRetry(10, 200*time.Millisecond),
		auditexport.WithDialOptions(grpc.WithChainUnaryInterceptor(count.interceptor)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{}); err != nil {
		t.Fatalf("GetCurrentUser before the restart: %v", err)
	}

	s.Stop()
	count.reset()

	// A write while the server is down: one attempt, UNAVAILABLE.
	_, err = c.Accounts.CreateUser(ctx, &pb.CreateUserRequest{User: &pb.User{
		Email: "while-down@example.com", AccountType: pb.AccountType_ACCOUNT_TYPE_VIEWER}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("CreateUser while the server is down: %v, want UNAVAILABLE", err)
	}
	if n := count.get("CreateUser"); n != 1 {
		t.Fatalf("CreateUser was attempted %d times, want exactly 1 (writes are never retried)", n)
	}

	// A read while the server is down: it keeps retrying until the server
	// is back, then succeeds.
	type result struct {
		user *pb.User
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
		done <- result{r.GetUser(), err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for count.get("GetCurrentUser") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("GetCurrentUser was not retried while the server was down (attempts: %d)", count.get("GetCurrentUser"))
		}
		select {
		case r := <-done:
			t.Fatalf("GetCurrentUser returned while the server was down: %v, %v", r.user, r.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.start("--grpc-addr", addr) // the same address: the client's target does not change

	r := <-done
	if r.err != nil {
		t.Fatalf("GetCurrentUser across the restart: %v (attempts: %d)", r.err, count.get("GetCurrentUser"))
	}
	if r.user.GetAccountType() != pb.AccountType_ACCOUNT_TYPE_ADMIN {
		t.Errorf("GetCurrentUser after the restart = %v, want the admin", r.user)
	}
	if n := count.get("GetCurrentUser"); n < 2 {
		t.Errorf("GetCurrentUser attempts = %d, want at least 2", n)
	}
	t.Logf("GetCurrentUser succeeded after %d attempts across the restart", count.get("GetCurrentUser"))

	// The failed write was not replayed when the server came back.
	users, err := c.Accounts.ListUsers(ctx, &pb.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users.GetUsers() {
		if u.GetEmail() == "while-down@example.com" {
			t.Errorf("the CreateUser issued while the server was down exists: %v", u)
		}
	}
	if n := count.get("CreateUser"); n != 1 {
		t.Errorf("CreateUser attempts = %d after the restart, want still 1", n)
	}
}

// TestReadmeGoClient compiles and runs the README's Go client program as
// written against the real server.
func TestReadmeGoClient(t *testing.T) {
	t.Parallel()
	program := readmeBlock(t, "goclient", "go")

	// Inside the module so that the program builds against this checkout.
	if err := os.MkdirAll(filepath.Join(repoRoot, ".tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(filepath.Join(repoRoot, ".tmp"), "readme-goclient-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(program), 0o644); err != nil {
		t.Fatal(err)
	}

	s := StartServer(t, "sqlite")
	cmd := exec.Command("go", "run", "./"+filepath.Base(dir))
	cmd.Dir = filepath.Dir(dir)
	cmd.Env = append(os.Environ(), "AUDITEXPORT_ADDR="+s.GRPCAddr, "AUDITEXPORT_API_KEY="+s.AdminKey,
		"AUDITEXPORT_DATA_DIR="+s.DataDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README Go client program failed: %v\n%s", err, out)
	}
	for _, want := range []string{"signed in as admin@", "schedule sch_", "EXPORT_PHASE_QUEUED rows=0", "EXPORT_PHASE_SUCCEEDED rows=", "RUN_STATE_SUCCEEDED"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README Go client output lacks %q:\n%s", want, out)
		}
	}
	files, _ := filepath.Glob(filepath.Join(s.LocalDir("", "go"), "*.jsonl.zst"))
	if len(files) != 1 {
		t.Errorf("exported files %v, want exactly one .jsonl.zst\n%s", files, out)
	}
}
