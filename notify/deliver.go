package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/google/uuid"
	"github.com/riverqueue/river"
)

// Notification types (the status Parameters' "type").
const (
	TypeHandshake = "handshake"
	TypeHeartbeat = "heartbeat"
	TypeEvent     = "event-notification"
)

// DeliverArgs are the arguments of one notification job.
type DeliverArgs struct {
	Subscription string    `json:"subscription"`
	Type         string    `json:"type"`
	Event        int64     `json:"event,omitempty"` // event number, for event-notification
	Focus        string    `json:"focus,omitempty"` // e.g. Task/123
	At           time.Time `json:"at"`
}

// Kind implements river.JobArgs.
func (DeliverArgs) Kind() string { return "fhirgate.notify" }

type deliverWorker struct {
	river.WorkerDefaults[DeliverArgs]
	s *Service
}

// Timeout bounds one attempt; the subscription's own timeout is applied
// to the POST inside.
func (w *deliverWorker) Timeout(*river.Job[DeliverArgs]) time.Duration {
	return 5*time.Minute + 5*time.Second
}

// errEndpoint is a delivery the endpoint refused or did not answer.
var errEndpoint = errors.New("notification endpoint failed")

func (w *deliverWorker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	s, a := w.s, job.Args
	res, err := s.cfg.Store.Read(ctx, "Subscription", a.Subscription)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
		return river.JobCancel(fmt.Errorf("Subscription/%s is gone", a.Subscription))
	}
	if err != nil {
		return err
	}
	sub, err := ParseSubscription(res.Raw, s.cfg.AllowHTTP)
	if err != nil {
		return river.JobCancel(err)
	}
	if a.Type == TypeHandshake && sub.Status != "requested" || a.Type != TypeHandshake && sub.Status != "active" {
		return nil // changed since: nothing to send
	}
	events, err := s.EventsSinceStart(ctx, a.Subscription)
	if err != nil {
		return err
	}
	if a.Type == TypeEvent {
		events = a.Event
	}
	body := s.bundle(sub, a, events)
	start := time.Now()
	err = s.post(ctx, sub, body)
	if s.cfg.Delivered != nil {
		s.cfg.Delivered(a.Type, time.Since(start), err)
	}
	switch {
	case a.Type == TypeHandshake:
		// the spec's handshake decides at once: 2xx active, else error
		status := "active"
		if err != nil {
			s.log.Warn("subscription handshake failed", "subscription", a.Subscription, "err", err)
			status = "error"
		}
		return s.setStatus(ctx, res, status)
	case err != nil && job.Attempt >= job.MaxAttempts:
		s.log.Warn("notification not delivered; subscription set to error", "subscription", a.Subscription, "err", err)
		if serr := s.setStatus(ctx, res, "error"); serr != nil {
			return serr
		}
		return err
	}
	return err
}

// post sends a notification Bundle to the subscription's endpoint.
func (s *Service) post(ctx context.Context, sub *Subscription, body []byte) error {
	timeout := 30 * time.Second
	if sub.Timeout > 0 {
		timeout = time.Duration(sub.Timeout) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", sub.MIME)
	for _, h := range sub.Headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		// the URL may carry secrets in its query: report the host only
		return fmt.Errorf("%w: POST to %s: %w", errEndpoint, req.URL.Host, errors.Unwrap(err))
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s answered %d", errEndpoint, req.URL.Host, resp.StatusCode)
	}
	return nil
}

// setStatus stores a new status of the Subscription, leaving the rest of
// its JSON as it was.
func (s *Service) setStatus(ctx context.Context, cur *fhir.Resource, status string) error {
	root, err := fjson.Parse(cur.Raw)
	if err != nil {
		return err
	}
	b := []byte{'{'}
	for i, m := range root.Members {
		if i > 0 {
			b = append(b, ',')
		}
		b = fjson.AppendString(b, m.Key)
		b = append(b, ':')
		if m.Key == "status" {
			b = fjson.AppendString(b, status)
		} else {
			b = fjson.AppendCompact(b, m.Value)
		}
	}
	b = append(b, '}')
	next, err := fhir.Parse(b)
	if err != nil {
		return err
	}
	next.Type, next.ID = cur.Type, cur.ID
	_, _, err = s.cfg.Store.Update(context.WithValue(ctx, serviceWrite{}, true), next, storage.UpdateOptions{IfMatch: cur.VersionID})
	if errors.Is(err, storage.ErrVersionConflict) {
		return nil // changed by its owner meanwhile: theirs wins
	}
	return err
}

type ref struct {
	Reference string `json:"reference"`
}

type param struct {
	Name           string  `json:"name"`
	ValueReference *ref    `json:"valueReference,omitempty"`
	ValueCanonical string  `json:"valueCanonical,omitempty"`
	ValueCode      string  `json:"valueCode,omitempty"`
	ValueString    string  `json:"valueString,omitempty"`
	ValueInstant   string  `json:"valueInstant,omitempty"`
	Part           []param `json:"part,omitempty"`
}

type entry struct {
	FullURL  string            `json:"fullUrl"`
	Resource json.RawMessage   `json:"resource,omitempty"`
	Request  map[string]string `json:"request"`
	Response map[string]string `json:"response,omitempty"`
}

// bundle builds the R4 backport notification: a history Bundle whose first
// entry is the SubscriptionStatus Parameters (STANDARDS.md §8.4).
func (s *Service) bundle(sub *Subscription, a DeliverArgs, events int64) []byte {
	subURL := s.cfg.BaseURL + "/Subscription/" + sub.ID
	ps := []param{
		{Name: "subscription", ValueReference: &ref{subURL}},
		{Name: "topic", ValueCanonical: sub.Topic},
		{Name: "status", ValueCode: map[bool]string{true: "requested", false: "active"}[a.Type == TypeHandshake]},
		{Name: "type", ValueCode: a.Type},
		{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(events, 10)},
	}
	var extra []entry
	if a.Type == TypeEvent {
		ev := param{Name: "notification-event", Part: []param{
			{Name: "event-number", ValueString: strconv.FormatInt(a.Event, 10)},
			{Name: "timestamp", ValueInstant: a.At.UTC().Format(time.RFC3339Nano)},
		}}
		if sub.Content == "id-only" && a.Focus != "" {
			focusURL := s.cfg.BaseURL + "/" + a.Focus
			ev.Part = append(ev.Part, param{Name: "focus", ValueReference: &ref{focusURL}})
			extra = append(extra, entry{FullURL: focusURL, Request: map[string]string{"method": "PUT", "url": a.Focus}, Response: map[string]string{"status": "200"}})
		}
		ps = append(ps, ev)
	}
	status, _ := json.Marshal(map[string]any{
		"resourceType": "Parameters",
		"meta":         map[string]any{"profile": []string{backportSD + "backport-subscription-status-r4"}},
		"parameter":    ps,
	})
	b, _ := json.Marshal(map[string]any{
		"resourceType": "Bundle",
		"id":           uuid.NewString(),
		"type":         "history",
		"timestamp":    s.cfg.Now().UTC().Format(time.RFC3339Nano),
		"entry": append([]entry{{
			FullURL:  "urn:uuid:" + uuid.NewString(),
			Resource: status,
			Request:  map[string]string{"method": "GET", "url": subURL + "/$status"},
			Response: map[string]string{"status": "200"},
		}}, extra...),
	})
	return b
}
