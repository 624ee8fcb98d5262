package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// formatError turns an error into what a person should read: the status
// code by its API name, the server's message, ErrorInfo's reason, and for
// INVALID_ARGUMENT (and ALREADY_EXISTS) one "field: message" line per
// violated field — never grpc-go's "rpc error: code = ... desc = ..." text.
func formatError(err error, addr string) string {
	// kong hands Run's error back wrapped, and status.FromError would then
	// use the wrapper's text ("rpc error: code = ..."): unwrap first.
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) || se.GRPCStatus() == nil {
		switch {
		case errors.Is(err, context.Canceled):
			return "Error: interrupted\n"
		case errors.Is(err, context.DeadlineExceeded):
			return "Error: DEADLINE_EXCEEDED: no answer within --timeout\n"
		}
		return "Error: " + err.Error() + "\n"
	}
	st := se.GRPCStatus()
	var b strings.Builder
	code := codeName(st.Code())
	var reason string
	var violations []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			violations = append(violations, d.GetFieldViolations()...)
		}
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		msg = fmt.Sprintf("cannot reach the server at %s (%s)", addr, unavailableCause(msg))
	case codes.Unauthenticated:
		if msg == "" {
			msg = "missing or invalid API key"
		}
	case codes.DeadlineExceeded:
		msg = "no answer within --timeout"
	}
	fmt.Fprintf(&b, "Error: %s", code)
	switch {
	case len(violations) == 0:
		fmt.Fprintf(&b, ": %s", msg)
	case st.Code() == codes.InvalidArgument:
		// The field lines say it all; the message repeats the first one.
		fmt.Fprintf(&b, ": %d invalid field(s)", len(violations))
	}
	if reason != "" && reason != code {
		fmt.Fprintf(&b, " (reason: %s)", reason)
	}
	b.WriteByte('\n')
	for _, v := range violations {
		fmt.Fprintf(&b, "%s: %s\n", v.GetField(), v.GetDescription())
	}
	return b.String()
}

// codeName spells a gRPC code the way the API documentation does.
func codeName(c codes.Code) string {
	names := map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
		codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
		codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
		codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
		codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return c.String()
}

// unavailableCause keeps the useful end of grpc-go's transport message
// (`connection error: desc = "transport: Error while dialing: dial tcp
// 127.0.0.1:1: connect: connection refused"` → "connection refused").
func unavailableCause(msg string) string {
	msg = strings.TrimSuffix(msg, `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg, "desc = ") {
		return msg[i+2:]
	}
	return msg
}
