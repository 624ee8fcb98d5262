package db

import "context"

// EndBatch records ends as one batch, as Group hands a batch to a write,
// and returns each one's result or ErrRunNotFound.
func EndBatch(ctx context.Context, r *Runs, ends []RunEnd) ([]RunEnded, []error, error) {
	ws := make([]*runWrite, len(ends))
	for i := range ends {
		w, err := newRunWrite(ctx)
		if err != nil {
			return nil, nil, err
		}
		w.end = &ends[i]
		ws[i] = w
	}
	if err := r.commit(ws); err != nil {
		return nil, nil, err
	}
	out, errs := make([]RunEnded, len(ws)), make([]error, len(ws))
	for i, w := range ws {
		out[i] = w.ended
		if !w.found {
			errs[i] = ErrRunNotFound
		}
	}
	return out, errs, nil
}
