package server

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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

// WithNotifyAllowedDomains lets schedules notify addresses of these domains
// besides the organization's own users (--notify-allowed-domains).
func (s *ScheduleService) WithNotifyAllowedDomains(domains []string) *ScheduleService {
	s.notifyDomains = domains
	return s
}
