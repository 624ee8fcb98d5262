package export

// RemotePolls is how many queries the remote hub made (tests).
func (r *Runner) RemotePolls() int64 { return r.remote.polls.Load() }
