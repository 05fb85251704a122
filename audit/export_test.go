package audit

// Queued reports how many events wait in the batch being formed (tests
// use it to know every request of a group has recorded).
func (t *Trail) Queued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil {
		return 0
	}
	return len(t.cur.recs)
}
