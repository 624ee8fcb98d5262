package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/auditexport/auditexport/internal/accounts"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/integrations"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/schedules"
	"github.com/auditexport/auditexport/internal/workbooks"
)

// errorDomain goes in every ErrorInfo.
const errorDomain = "auditexport"

// newStatus builds a status error carrying ErrorInfo (and more details).
func newStatus(code codes.Code, reason, msg string, details ...*errdetails.BadRequest) error {
	st := status.New(code, msg)
	info := &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}
	var err error
	if len(details) > 0 {
		st, err = st.WithDetails(info, details[0])
	} else {
		st, err = st.WithDetails(info)
	}
	if err != nil {
		return status.Error(codes.Internal, "building error details")
	}
	return st.Err()
}

// violations collects BadRequest field violations; err() is nil when empty.
type violations struct {
	list []*errdetails.BadRequest_FieldViolation
}

func (v *violations) add(field, format string, args ...any) {
	v.list = append(v.list, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v *violations) empty() bool { return len(v.list) == 0 }

func (v *violations) err() error {
	if len(v.list) == 0 {
		return nil
	}
	msg := v.list[0].Field + ": " + v.list[0].Description
	if len(v.list) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(v.list)-1)
	}
	return newStatus(codes.InvalidArgument, "INVALID_ARGUMENT", msg, &errdetails.BadRequest{FieldViolations: v.list})
}

// invalidField is a one-violation INVALID_ARGUMENT.
func invalidField(field, format string, args ...any) error {
	var v violations
	v.add(field, format, args...)
	return v.err()
}

func notFound(kind, id string) error {
	return newStatus(codes.NotFound, "NOT_FOUND", fmt.Sprintf("%s %q not found", kind, id))
}

func permissionDenied(msg string) error {
	return newStatus(codes.PermissionDenied, "PERMISSION_DENIED", msg)
}

func failedPrecondition(reason, msg string) error {
	return newStatus(codes.FailedPrecondition, reason, msg)
}

func alreadyExists(field, msg string) error {
	var v violations
	v.add(field, "%s", msg)
	return newStatus(codes.AlreadyExists, "ALREADY_EXISTS", field+": "+msg, &errdetails.BadRequest{FieldViolations: v.list})
}

func unauthenticated(msg string) error {
	return newStatus(codes.Unauthenticated, "UNAUTHENTICATED", msg)
}

// internalError logs the cause with the request id and returns an opaque error.
func internalError(ctx context.Context, log *slog.Logger, op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return newStatus(codes.Canceled, "CANCELED", "request canceled")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return newStatus(codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "deadline exceeded")
	}
	log.ErrorContext(ctx, "internal error", "op", op, "err", err.Error(), "request_id", requestIDFrom(ctx))
	return newStatus(codes.Internal, "INTERNAL", "internal error (request id "+requestIDFrom(ctx)+")")
}

// preconditionError is a typed error of the rules (internal/...) that is a
// FAILED_PRECONDITION with a documented ErrorInfo reason (docs/api.md).
type preconditionError interface {
	error
	Reason() string
}

// commandError maps what a use case of internal/ returned to a status, in
// this one place: its typed errors to their codes and reasons, a status
// error as it is, anything else to INTERNAL (logged with op).
func commandError(ctx context.Context, log *slog.Logger, op string, err error) error {
	var taken *integrations.NameTakenError
	var others *workbooks.SchedulesOwnedByOthersError
	var pre preconditionError
	var invalid *schedules.InvalidError
	var emailTaken *accounts.EmailTakenError
	var limit *export.ManualRunLimitError
	var stale *revision.StaleError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &stale):
		return newStatus(codes.Aborted, stale.Reason(), stale.Error())
	case errors.Is(err, revision.ErrConcurrent):
		return newStatus(codes.Aborted, "CONCURRENT_UPDATE", revision.ErrConcurrent.Error())
	case errors.As(err, &invalid):
		var v violations
		for _, x := range invalid.Violations {
			v.add("schedule."+x.Field, "%s", x.Msg)
		}
		return v.err()
	case errors.As(err, &emailTaken):
		return alreadyExists("user.email", emailTaken.Error())
	case errors.As(err, &limit):
		reason := "MANUAL_RUN_LIMIT_ORG"
		if limit.Scope == "server" {
			reason = "MANUAL_RUN_LIMIT_SERVER"
		}
		return resourceExhausted(reason, limit.Error(), export.ManualRetryAfter)
	case errors.As(err, &taken):
		return alreadyExists("storage_integration.name", taken.Error())
	case errors.As(err, &others):
		return newStatus(codes.PermissionDenied, others.Reason(), others.Error())
	case errors.As(err, &pre):
		return failedPrecondition(pre.Reason(), pre.Error())
	}
	if _, ok := statusOf(err); ok {
		return err
	}
	return internalError(ctx, log, op, err)
}

// ensureErrorInfo makes sure every returned error carries ErrorInfo, including
// errors produced outside our handlers (e.g. by grpc itself).
func ensureErrorInfo(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return newStatus(codes.Internal, "INTERNAL", "internal error")
	}
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.ErrorInfo); ok {
			return err
		}
	}
	withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: codeName(st.Code()), Domain: errorDomain})
	if derr != nil {
		return err
	}
	return withInfo.Err()
}

// gatewayField finds the field a grpc-gateway request-parsing error names
// (`parsing field "state": "99" is not a valid value`).
var gatewayField = regexp.MustCompile(`^parsing (?:field|list) "([a-z0-9_]+)"`)

// GatewayError gives an error the REST gateway produced itself (a query
// parameter or body it could not parse, before any RPC) the ErrorInfo every
// error carries and, when it names a field, a BadRequest violation for it.
// Errors from our RPCs pass through unchanged.
//
// Field violations are named in the JSON casing of the transport: the RPCs
// name proto paths (schedule.time_zone), REST answers name the JSON ones
// (schedule.timeZone), in the BadRequest details and in a message that
// starts with the path.
func GatewayError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if len(st.Details()) > 0 {
		return jsonFieldPaths(st)
	}
	if m := gatewayField.FindStringSubmatch(st.Message()); st.Code() == codes.InvalidArgument && m != nil {
		return GatewayError(invalidField(m[1], "%s", strings.TrimPrefix(st.Message()[len(m[0]):], ": ")))
	}
	return ensureErrorInfo(err)
}

// jsonFieldPaths rewrites the BadRequest field paths of st to JSON names.
func jsonFieldPaths(st *status.Status) error {
	p := st.Proto()
	changed := false
	msg := p.GetMessage()
	for _, a := range p.GetDetails() {
		if !a.MessageIs(&errdetails.BadRequest{}) {
			continue
		}
		var br errdetails.BadRequest
		if a.UnmarshalTo(&br) != nil {
			continue
		}
		for i, v := range br.GetFieldViolations() {
			j := JSONFieldPath(v.GetField())
			if j == v.GetField() {
				continue
			}
			if i == 0 && strings.HasPrefix(msg, v.GetField()+": ") {
				msg = j + msg[len(v.GetField()):]
			}
			v.Field = j
			changed = true
		}
		if !changed || a.MarshalFrom(&br) != nil {
			return st.Err()
		}
	}
	if !changed {
		return st.Err()
	}
	p.Message = msg
	return status.FromProto(p).Err()
}

// JSONFieldPath turns a proto field path (elements[0].column_name) into
// its JSON form (elements[0].columnName), as protojson names fields:
// each underscore dropped and the letter after it upper-cased. Indexes and
// map keys in brackets are kept as they are.
func JSONFieldPath(path string) string {
	if !strings.Contains(path, "_") {
		return path
	}
	var b strings.Builder
	depth, upper := 0, false
	for _, r := range path {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0 && r == '_':
			upper = true
			continue
		case upper:
			r = []rune(strings.ToUpper(string(r)))[0]
		}
		upper = false
		b.WriteRune(r)
	}
	return b.String()
}

var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// codeName is the canonical UPPER_SNAKE name of a code (AUDIT_LOGS error_code).
func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", c)
}

// sentTime is the update_time a client sent with an update (nil: none).
func sentTime(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime()
	return &t
}

// statusOf reports whether err is already a gRPC status error.
func statusOf(err error) (*status.Status, bool) {
	st, ok := status.FromError(err)
	return st, ok && st.Code() != codes.Unknown
}
