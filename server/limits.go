package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/auditexport/auditexport/internal/export"
)

// resourceExhausted is RESOURCE_EXHAUSTED (HTTP 429) with an ErrorInfo
// reason and a RetryInfo saying when to try again.
func resourceExhausted(reason, msg string, retry time.Duration) error {
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	if err != nil {
		return status.Error(codes.Internal, "building error details")
	}
	return st.Err()
}

// startRunError maps the error of starting a Send now run.
func (s *ScheduleService) startRunError(ctx context.Context, err error) error {
	var limit *export.ManualRunLimitError
	if errors.As(err, &limit) {
		reason := "MANUAL_RUN_LIMIT_ORG"
		if limit.Scope == "server" {
			reason = "MANUAL_RUN_LIMIT_SERVER"
		}
		return resourceExhausted(reason, limit.Error(), export.ManualRetryAfter)
	}
	return internalError(ctx, s.log, "start run", err)
}

// WithNotifyAllowedDomains lets schedules notify addresses of these domains
// besides the organization's own users (--notify-allowed-domains).
func (s *ScheduleService) WithNotifyAllowedDomains(domains []string) *ScheduleService {
	s.notifyDomains = domains
	return s
}
