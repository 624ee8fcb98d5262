package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/auditexport/auditexport/ent/user"
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

// checkNotifyRecipients refuses notify_emails that are neither a user of
// the caller's organization nor in a domain the operator allows: otherwise
// anyone who may create a schedule could make the server mail arbitrary
// outsiders text of their choosing.
func (s *ScheduleService) checkNotifyRecipients(ctx context.Context, v *violations, field string, emails []string) error {
	if len(emails) == 0 {
		return nil
	}
	users, err := s.db.User.Query().Select(user.FieldEmail).Strings(ctx) // scoped to the org
	if err != nil {
		return err
	}
	members := map[string]bool{}
	for _, u := range users {
		members[strings.ToLower(u)] = true
	}
	for i, e := range emails {
		if !export.NotifyAllowed(e, members, s.notifyDomains) {
			v.add(fmt.Sprintf("%s[%d]", field, i), "%q is neither a user of this organization nor in a domain the operator allows (--notify-allowed-domains)", e)
		}
	}
	return nil
}
