package server

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// Auditor writes the AuditEvents of patient-data accesses and refusals,
// chained by hash (package audit). Requests hand their events to a queue;
// one goroutine seals them in order and stores them in batches, so a read
// does not wait for a write. Close flushes what is queued.
type Auditor struct {
	store storage.Store
	log   *slog.Logger
	queue chan *fhir.Resource
	done  chan struct{}

	mu    sync.Mutex
	head  audit.Link // the last stored event's link
	close sync.Once
}

// auditBatch bounds one write of the audit trail.
const (
	auditBatch    = 256
	auditQueueLen = 8192
	auditFlush    = 100 * time.Millisecond
)

// NewAuditor continues the chain from the newest stored AuditEvent.
func NewAuditor(ctx context.Context, st storage.Store, reg *search.Registry, log *slog.Logger) (*Auditor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	head, err := lastAuditLink(ctx, st, reg)
	if err != nil {
		return nil, err
	}
	a := &Auditor{store: st, log: log, queue: make(chan *fhir.Resource, auditQueueLen), done: make(chan struct{}), head: head}
	go a.run()
	return a, nil
}

// lastAuditLink finds the chain head: the AuditEvent with the greatest id
// (audit.ID sorts in chain order).
func lastAuditLink(ctx context.Context, st storage.Store, reg *search.Registry) (audit.Link, error) {
	q, err := reg.ParseQuery("AuditEvent", url.Values{"_sort": {"-_id"}, "_count": {"1"}, "_total": {"none"}}, true)
	if err != nil {
		return audit.Link{}, err
	}
	res, err := st.Search(ctx, storage.SearchRequest{Query: q})
	if err != nil || len(res.Matches) == 0 {
		return audit.Link{}, err
	}
	return audit.LinkOf(res.Matches[0])
}

// record queues an event; when the queue is full the request waits, so
// no access goes unrecorded.
func (a *Auditor) record(ev *fhir.Resource) { a.queue <- ev }

func (a *Auditor) run() {
	defer close(a.done)
	t := time.NewTicker(auditFlush)
	defer t.Stop()
	var batch []*fhir.Resource
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := a.write(batch); err != nil {
			a.log.Error("audit trail write failed", "events", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case ev, ok := <-a.queue:
			if !ok {
				flush()
				return
			}
			batch = append(batch, ev)
			if len(batch) >= auditBatch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

// write seals the events in order and stores them in one transaction; the
// chain advances only when the transaction commits.
func (a *Auditor) write(batch []*fhir.Resource) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx := context.Background()
	h := a.head
	sealed := make([]*fhir.Resource, 0, len(batch))
	for _, ev := range batch {
		s, next, err := audit.Seal(h, ev)
		if err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		s = s.Rewrite(audit.ID(next.Seq), nil, "", time.Time{}) // ids sort in chain order
		sealed = append(sealed, s)
		h = next
	}
	if _, err := a.store.CreateMany(ctx, sealed); err != nil {
		return err
	}
	a.head = h
	return nil
}

// Close stops the writer after flushing the queue.
func (a *Auditor) Close() {
	a.close.Do(func() { close(a.queue) })
	<-a.done
}

// auditMiddleware records, after each request, an AuditEvent for every
// patient whose data it touched, or one for a refusal.
func (s *Server) auditMiddleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if s.cfg.Auditor == nil {
			return
		}
		v, ok := c.Get(ctxAccess)
		if !ok {
			return
		}
		a := v.(*access)
		status := c.Writer.Status()
		if len(a.patients) == 0 && a.refused == "" && status < 400 {
			return
		}
		ev := audit.Event{
			Interaction:  a.interaction,
			Operation:    a.operation,
			Recorded:     s.now(),
			Outcome:      audit.OutcomeForStatus(status),
			OutcomeDesc:  cmp.Or(a.refused, a.note),
			Server:       s.baseURL(c.Request),
			Resource:     a.resource,
			ResourceType: a.resourceType,
			Query:        a.query,
		}
		if ev.Interaction == "" {
			ev.Interaction = "read"
		}
		if host, _, err := net.SplitHostPort(c.Request.RemoteAddr); err == nil {
			ev.ClientAddress = host
		}
		if p := principal(c); p != nil {
			ev.Who, ev.ClientID, ev.Issuer, ev.TokenID = p.Who(), p.ClientID, p.Issuer, p.TokenID
			for _, pu := range p.PurposeOfUse {
				ev.Purpose = append(ev.Purpose, audit.Coding{System: pu.System, Code: pu.Code})
			}
		}
		for ref := range a.consents {
			ev.Consents = append(ev.Consents, ref)
		}
		sort.Strings(ev.Consents)
		pats := make([]string, 0, len(a.patients))
		for p := range a.patients {
			pats = append(pats, p)
		}
		sort.Strings(pats)
		if len(pats) == 0 {
			pats = []string{""}
		}
		for _, pt := range pats {
			e := ev
			e.Patient = pt
			built, err := audit.Build(e)
			if err != nil {
				s.log.Error("audit event not built", "err", err)
				continue
			}
			s.cfg.Auditor.record(built)
		}
	}
}

// VerifyAudit checks the stored audit trail, reading the AuditEvents in
// chain order (their ids sort by sequence) page by page.
func VerifyAudit(ctx context.Context, st storage.Store, reg *search.Registry) (audit.Report, error) {
	seq := func(yield func(*fhir.Resource, error) bool) {
		cursor := ""
		for {
			q, err := reg.ParseQuery("AuditEvent", url.Values{"_sort": {"_id"}, "_count": {"1000"}, "_total": {"none"}}, true)
			if err != nil {
				yield(nil, err)
				return
			}
			res, err := st.Search(ctx, storage.SearchRequest{Query: q, Cursor: cursor})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, r := range res.Matches {
				if !yield(r, nil) {
					return
				}
			}
			if res.Next == "" {
				return
			}
			cursor = res.Next
		}
	}
	return audit.Verify(seq)
}
