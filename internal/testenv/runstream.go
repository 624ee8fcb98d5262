package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	// The REST error details (ErrorInfo, BadRequest, RetryInfo) decode into
	// their types: registered by this import.
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// Progress is one streamed ExportProgress and when it arrived, measured from
// the call.
type Progress struct {
	At time.Duration
	P  *pb.ExportProgress
}

// IsTerminal reports whether a phase ends a run (SUCCEEDED, FAILED,
// CANCELED, SKIPPED).
func IsTerminal(ph pb.ExportPhase) bool {
	return ph >= pb.ExportPhase_EXPORT_PHASE_SUCCEEDED && ph <= pb.ExportPhase_EXPORT_PHASE_SKIPPED
}

// RunStream follows the progress stream of one run — SendNow or
// WatchExportRun, over gRPC or the REST gateway's chunked NDJSON — to its
// end. A goroutine reads it from the call on, so a test may look at the
// first messages while the run goes on (First, Until), or wait for the end
// (Wait, End, Terminal). The stream ends when ctx does.
type RunStream struct {
	t     testing.TB
	label string
	start time.Time

	// REST only: the response's status and headers (0 and nil when the
	// request failed).
	HTTPStatus       int
	Header           http.Header
	TransferEncoding []string

	mu      sync.Mutex
	msgs    []Progress
	done    bool
	err     error         // why the stream ended; nil for a clean end
	changed chan struct{} // closed (and replaced) on every message and at the end
	pos     int           // messages consumed by Until
}

func newRunStream(t testing.TB, label string, start time.Time) *RunStream {
	return &RunStream{t: t, label: label, start: start, changed: make(chan struct{})}
}

// SendNow calls SendNow over gRPC (ctx carries the caller's key) and
// follows the stream.
func SendNow(t testing.TB, ctx context.Context, cl pb.ScheduleServiceClient, scheduleID string) *RunStream {
	start := time.Now()
	st, err := cl.SendNow(ctx, &pb.SendNowRequest{Id: scheduleID})
	return followGRPC(t, "SendNow "+scheduleID, start, st, err)
}

// Watch calls WatchExportRun over gRPC and follows the stream.
func Watch(t testing.TB, ctx context.Context, cl pb.ScheduleServiceClient, runID string) *RunStream {
	start := time.Now()
	st, err := cl.WatchExportRun(ctx, &pb.WatchExportRunRequest{Id: runID})
	return followGRPC(t, "WatchExportRun "+runID, start, st, err)
}

// followGRPC follows a gRPC progress stream; err is the call's.
func followGRPC[M interface{ GetProgress() *pb.ExportProgress }](t testing.TB, label string, start time.Time,
	st interface{ Recv() (M, error) }, err error) *RunStream {
	s := newRunStream(t, label, start)
	if err != nil {
		s.end(err)
		return s
	}
	go s.read(func() (*pb.ExportProgress, error) { m, err := st.Recv(); return m.GetProgress(), err })
	return s
}

// RESTStream makes a streaming REST call (POST …:sendNow, GET …:watch) as
// key and follows its NDJSON lines ({"result":{"progress":{…}}}). A refusal
// — an error body, or a line {"error":{…}} — ends the stream with that
// google.rpc.Status as a gRPC status error (status.Convert reads it); a line
// that is neither ends it with an error naming the line. It returns once the
// response's headers arrived.
func RESTStream(t testing.TB, ctx context.Context, baseURL, method, path, key, body string) *RunStream {
	s := newRunStream(t, "REST "+method+" "+path, time.Now())
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, strings.NewReader(body))
	if err != nil {
		s.end(err)
		return s
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		s.end(err)
		return s
	}
	s.HTTPStatus, s.Header, s.TransferEncoding = resp.StatusCode, resp.Header, resp.TransferEncoding
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	go func() {
		defer resp.Body.Close()
		s.read(func() (*pb.ExportProgress, error) { return nextNDJSON(sc) })
	}()
	return s
}

// nextNDJSON decodes the next non-empty line of a gateway stream.
func nextNDJSON(sc *bufio.Scanner) (*pb.ExportProgress, error) {
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var env struct {
			Result *struct{ Progress json.RawMessage } `json:"result"`
			Error  json.RawMessage                     `json:"error"`
		}
		if err := json.Unmarshal(line, &env); err != nil {
			return nil, fmt.Errorf("line is not JSON: %s (%v)", line, err)
		}
		if env.Result != nil && len(env.Error) == 0 {
			p := &pb.ExportProgress{}
			if err := protojson.Unmarshal(env.Result.Progress, p); err != nil {
				return nil, fmt.Errorf("line %s: %w", line, err)
			}
			return p, nil
		}
		// An error is a stream line {"error": …} or the body itself.
		raw := []byte(env.Error)
		if len(raw) == 0 {
			raw = line
		}
		st := &spb.Status{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, st); err != nil || st.GetCode() == 0 {
			return nil, fmt.Errorf("line is not a result: %s (%v)", line, err)
		}
		return nil, status.ErrorProto(st)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

func (s *RunStream) read(recv func() (*pb.ExportProgress, error)) {
	for {
		p, err := recv()
		if errors.Is(err, io.EOF) {
			s.end(nil)
			return
		}
		if _, isStatus := status.FromError(err); err != nil && !isStatus {
			err = fmt.Errorf("after %d messages: %w", s.count(), err)
		}
		if err != nil {
			s.end(err) // a gRPC status as it is, for status.Convert
			return
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, Progress{time.Since(s.start), p})
		s.notifyLocked()
		s.mu.Unlock()
	}
}

func (s *RunStream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func (s *RunStream) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done, s.err = true, err
	s.notifyLocked()
}

func (s *RunStream) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// at waits for message i until deadline (nil: no limit). ended: the stream
// ended before it; timedOut: the deadline passed first.
func (s *RunStream) at(i int, deadline <-chan time.Time) (p Progress, ended, timedOut bool) {
	for {
		s.mu.Lock()
		if i < len(s.msgs) {
			p := s.msgs[i]
			s.mu.Unlock()
			return p, false, false
		}
		if s.done {
			s.mu.Unlock()
			return Progress{}, true, false
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return Progress{}, false, true
		}
	}
}

// Err is why the stream ended (nil for a clean end, or while it runs).
func (s *RunStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Msgs returns the messages received so far.
func (s *RunStream) Msgs() []Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Progress(nil), s.msgs...)
}

// Last is the latest message received so far (nil before the first).
func (s *RunStream) Last() *pb.ExportProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return nil
	}
	return s.msgs[len(s.msgs)-1].P
}

// Wait waits for the stream to end and returns every message and why it
// ended (nil: cleanly, after its last message).
func (s *RunStream) Wait() ([]Progress, error) {
	for {
		s.mu.Lock()
		if s.done {
			defer s.mu.Unlock()
			return append([]Progress(nil), s.msgs...), s.err
		}
		ch := s.changed
		s.mu.Unlock()
		<-ch
	}
}

// First returns the first message; the test fails if the stream ends first
// or none arrives within timeout.
func (s *RunStream) First(timeout time.Duration) *pb.ExportProgress {
	s.t.Helper()
	p, ended, timedOut := s.at(0, time.After(timeout))
	switch {
	case ended:
		s.t.Fatalf("%s: stream ended before its first message: %v", s.label, s.Err())
	case timedOut:
		s.t.Fatalf("%s: no first message within %s", s.label, timeout)
	}
	return p.P
}

// RunID is the run of the first message, waiting for it as long as the
// call's context allows; the test fails if the stream ends first.
func (s *RunStream) RunID() string {
	s.t.Helper()
	p, ended, _ := s.at(0, nil)
	if ended {
		s.t.Fatalf("%s: stream ended before its first message: %v", s.label, s.Err())
	}
	return p.P.GetRunId()
}

// End waits for the stream to end and returns its last message; the test
// fails if the stream broke or was empty. The caller checks the phase.
func (s *RunStream) End() *pb.ExportProgress {
	s.t.Helper()
	msgs, err := s.Wait()
	if err != nil {
		s.t.Fatalf("%s: %v", s.label, err)
	}
	if len(msgs) == 0 {
		s.t.Fatalf("%s: empty stream", s.label)
	}
	return msgs[len(msgs)-1].P
}

// Until returns the next message (after those Until already consumed) that
// satisfies pred; the test fails on timeout, or when the stream ends or the
// run turns terminal first.
func (s *RunStream) Until(what string, timeout time.Duration, pred func(*pb.ExportProgress) bool) *pb.ExportProgress {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		p, ended, timedOut := s.at(s.pos, deadline)
		switch {
		case ended:
			s.t.Fatalf("%s: stream ended (%v) before %s; last: %v", s.label, s.Err(), what, s.Last())
		case timedOut:
			s.t.Fatalf("%s: no %s within %s; last: %v", s.label, what, timeout, s.Last())
		}
		s.pos++
		if pred(p.P) {
			return p.P
		}
		if IsTerminal(p.P.GetPhase()) {
			s.t.Fatalf("%s: run ended (%v) before %s", s.label, p.P, what)
		}
	}
}

// Terminal waits for the terminal message and checks that it is the only
// one and that the stream ends cleanly within 5 s after it.
func (s *RunStream) Terminal(timeout time.Duration) *pb.ExportProgress {
	s.t.Helper()
	p := s.Until("a terminal message", timeout, func(p *pb.ExportProgress) bool { return IsTerminal(p.GetPhase()) })
	extra, ended, timedOut := s.at(s.pos, time.After(5*time.Second))
	switch {
	case timedOut:
		s.t.Errorf("%s: stream still open 5s after its terminal message", s.label)
	case !ended:
		s.t.Errorf("%s: message after the terminal one: %v", s.label, extra.P)
	case s.Err() != nil:
		s.t.Errorf("%s: stream ended with %v after the terminal message", s.label, s.Err())
	}
	for _, m := range s.Msgs()[:s.pos-1] {
		if IsTerminal(m.P.GetPhase()) {
			s.t.Errorf("%s: more than one terminal message: %v", s.label, m.P)
		}
	}
	return p
}
