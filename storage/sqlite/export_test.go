package sqlite

import "time"

// SetWALLimit sets the write-ahead log's bound and how often a RESTART
// checkpoint may be tried (every 0 disables them), for tests.
func SetWALLimit(limit int64, every time.Duration) (restore func()) {
	l, e := walLimit, restartEvery
	walLimit, restartEvery = limit, every
	if every == 0 {
		restartEvery = 1 << 62
	}
	return func() { walLimit, restartEvery = l, e }
}
