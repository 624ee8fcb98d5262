package integrations

// NameTakenError: another integration of the organization has the name.
type NameTakenError struct{ Name string }

func (e *NameTakenError) Error() string {
	return "an integration named " + e.Name + " already exists"
}

// ScheduleOutsideDestinationError: an update that keeps the linked
// schedules running moves the destination away from one of them.
type ScheduleOutsideDestinationError struct{ ScheduleID, URI string }

// Reason is the ErrorInfo reason (FAILED_PRECONDITION).
func (e *ScheduleOutsideDestinationError) Reason() string { return "SCHEDULE_OUTSIDE_DESTINATION" }

func (e *ScheduleOutsideDestinationError) Error() string {
	return "schedule " + e.ScheduleID + " writes to " + e.URI + ", which is not under the new destination; " +
		"update or delete it first, or omit update_linked_schedules to pause it"
}
