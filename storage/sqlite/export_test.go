package sqlite

import "time"

// SetWALLimit sets the write-ahead log's bound (its content and its file)
// and how often a RESTART checkpoint may be tried (every 0 disables them),
// for tests.
func SetWALLimit(limit int64, every time.Duration) (restore func()) {
	l, f, e := walLimit, walFileLimit, restartEvery
	walLimit, walFileLimit, restartEvery = limit, limit, every
	if every == 0 {
		restartEvery = 1 << 62
	}
	return func() { walLimit, walFileLimit, restartEvery = l, f, e }
}
