package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/storage/postgres"
	"github.com/fhirgate/fhirgate/storage/postgres/pgtest"
	"github.com/fhirgate/fhirgate/storage/sqlite"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

var registry = sync.OnceValue(func() *search.Registry {
	r, err := search.New(search.Options{})
	if err != nil {
		panic(err)
	}
	return r
})

type backend struct {
	name string
	open func(t *testing.T) storage.Store
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) storage.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"), sqlstore.Options{Registry: registry()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"postgres", func(t *testing.T) storage.Store {
			s, err := postgres.Open(context.Background(), pgtest.Config(t), sqlstore.Options{Registry: registry()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
}

// clock is a settable fake clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// subscriber is a notification endpoint; fail answers 500 while > 0.
type subscriber struct {
	*httptest.Server
	got  chan notification
	fail atomic.Int32
}

type notification struct {
	header http.Header
	typ    string
	status string
	events string
	number string
	focus  string
	raw    []byte
}

func newSubscriber(t *testing.T) *subscriber {
	s := &subscriber{got: make(chan notification, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.fail.Load() > 0 {
			s.fail.Add(-1)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		b, _ := io.ReadAll(r.Body)
		n, err := parseNotification(b)
		if err != nil {
			t.Errorf("bad notification: %v: %s", err, b)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n.header = r.Header
		s.got <- n
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

func parseNotification(b []byte) (notification, error) {
	var bundle struct {
		ResourceType, Type string
		Entry              []struct {
			FullURL  string `json:"fullUrl"`
			Resource *struct {
				ResourceType string
				Parameter    []struct {
					Name           string
					ValueCode      string
					ValueString    string
					ValueReference *struct{ Reference string }
					Part           []struct {
						Name           string
						ValueString    string
						ValueReference *struct{ Reference string }
					}
				}
			}
			Request struct{ Method, URL string }
		}
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		return notification{}, err
	}
	if bundle.ResourceType != "Bundle" || bundle.Type != "history" || len(bundle.Entry) == 0 || bundle.Entry[0].Resource == nil ||
		bundle.Entry[0].Resource.ResourceType != "Parameters" || !strings.HasSuffix(bundle.Entry[0].Request.URL, "/$status") {
		return notification{}, errors.New("not a history Bundle with the status Parameters first")
	}
	n := notification{raw: b}
	for _, p := range bundle.Entry[0].Resource.Parameter {
		switch p.Name {
		case "type":
			n.typ = p.ValueCode
		case "status":
			n.status = p.ValueCode
		case "events-since-subscription-start":
			n.events = p.ValueString
		case "notification-event":
			for _, q := range p.Part {
				switch q.Name {
				case "event-number":
					n.number = q.ValueString
				case "focus":
					n.focus = q.ValueReference.Reference
				}
			}
		}
	}
	for _, e := range bundle.Entry[1:] {
		if e.Resource != nil {
			return notification{}, errors.New("id-only payload carries a resource")
		}
	}
	return n, nil
}

func (s *subscriber) next(t *testing.T) notification {
	t.Helper()
	select {
	case n := <-s.got:
		return n
	case <-time.After(20 * time.Second):
		t.Fatal("no notification arrived")
	}
	return notification{}
}

func (s *subscriber) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case n := <-s.got:
		t.Fatalf("unexpected notification %s: %s", n.typ, n.raw)
	case <-time.After(d):
	}
}

type fixture struct {
	store storage.Store
	svc   *notify.Service
	clk   *clock
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	if err := f.svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) stop(t *testing.T) {
	t.Helper()
	if err := f.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T, st storage.Store, clk *clock) *fixture {
	t.Helper()
	return newFixtureRetry(t, st, clk, 10*time.Millisecond)
}

func newFixtureRetry(t *testing.T, st storage.Store, clk *clock, retry time.Duration) *fixture {
	t.Helper()
	svc, err := notify.New(context.Background(), notify.Config{
		Store: st, BaseURL: "https://gw.example.org/fhir", AllowHTTP: true, Now: clk.now,
		PollInterval: 20 * time.Millisecond, MaxAttempts: 5,
		RetryDelay: func(int) time.Duration { return retry },
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.Install()
	return &fixture{store: st, svc: svc, clk: clk}
}

func subscriptionJSON(id, topic, filter, endpoint string, heartbeat int) string {
	return fmt.Sprintf(`{"resourceType":"Subscription","id":%q,"status":"requested","reason":"test",
"meta":{"profile":["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"]},
"criteria":%q,
"_criteria":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":%q}]},
"channel":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period","valueUnsignedInt":%d}],
"type":"rest-hook","endpoint":%q,"header":["Authorization: Bearer s3cret"],"payload":"application/fhir+json",
"_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":"id-only"}]}}}`,
		id, topic, filter, heartbeat, endpoint)
}

func taskJSON(id, status, owner string) string {
	return fmt.Sprintf(`{"resourceType":"Task","id":%q,"status":%q,"intent":"order",
"groupIdentifier":{"system":%q,"value":"req-1"},"for":{"reference":"Patient/p1"},
"requester":{"reference":"Organization/hosp"},"owner":{"reference":%q}}`, id, status, referral.RequisitionSystem, owner)
}

func create(t *testing.T, st storage.Store, body string) error {
	t.Helper()
	r, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Create(context.Background(), r)
	return err
}

func update(t *testing.T, st storage.Store, body string) {
	t.Helper()
	r, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Update(context.Background(), r, storage.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, st storage.Store, id string) string {
	t.Helper()
	r, err := st.Read(context.Background(), "Subscription", id)
	if err != nil {
		t.Fatal(err)
	}
	return r.Root().Get("status").String()
}

// waitStatus waits for the Subscription to reach want.
func waitStatus(t *testing.T, st storage.Store, id, want string) {
	t.Helper()
	for range 1000 {
		if status(t, st, id) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("Subscription/%s status %s, want %s", id, status(t, st, id), want)
}

func TestNotifications(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Run("HandshakeThenEvents", func(t *testing.T) { testHandshakeThenEvents(t, b.open(t)) })
			t.Run("RetryUntilRecovered", func(t *testing.T) { testRetry(t, b.open(t)) })
			t.Run("SurvivesRestart", func(t *testing.T) { testRestart(t, b.open(t)) })
			t.Run("Refused", func(t *testing.T) { testRefused(t, b.open(t)) })
			t.Run("Heartbeat", func(t *testing.T) { testHeartbeat(t, b.open(t)) })
			t.Run("QueryBasedRefused", func(t *testing.T) { testQueryBased(t, b.open(t)) })
		})
	}
}

func testHandshakeThenEvents(t *testing.T, st storage.Store) {
	clk := &clock{}
	f := newFixture(t, st, clk)
	f.start(t)
	defer f.stop(t)
	prov, other, requester := newSubscriber(t), newSubscriber(t), newSubscriber(t)
	for _, s := range []struct {
		id, topic, filter string
		ep                *subscriber
	}{
		{"prov", notify.TopicNewRequest, "Task?owner=Organization/so-1", prov},
		{"other", notify.TopicNewRequest, "Task?owner=Organization/so-2", other},
		{"req", notify.TopicStatusChanged, "Task?requester=Organization/hosp", requester},
	} {
		if err := create(t, st, subscriptionJSON(s.id, s.topic, s.filter, s.ep.URL, 0)); err != nil {
			t.Fatal(err)
		}
		hs := s.ep.next(t)
		if hs.typ != notify.TypeHandshake || hs.events != "0" || hs.header.Get("Authorization") != "Bearer s3cret" ||
			!strings.HasPrefix(hs.header.Get("Content-Type"), "application/fhir+json") {
			t.Fatalf("handshake %+v", hs)
		}
		waitStatus(t, st, s.id, "active")
	}
	for i := 1; i <= 3; i++ {
		if err := create(t, st, taskJSON(fmt.Sprint("t", i), "requested", "Organization/so-1")); err != nil {
			t.Fatal(err)
		}
		n := prov.next(t)
		if n.typ != notify.TypeEvent || n.number != fmt.Sprint(i) || n.events != fmt.Sprint(i) ||
			n.focus != fmt.Sprintf("https://gw.example.org/fhir/Task/t%d", i) {
			t.Fatalf("event %d: %+v %s", i, n, n.raw)
		}
	}
	// a Task that is not a second-opinion Task fires nothing
	if err := create(t, st, `{"resourceType":"Task","id":"plain","status":"requested","intent":"order","owner":{"reference":"Organization/so-1"}}`); err != nil {
		t.Fatal(err)
	}
	// a status change reaches the requester, not the recipients' new-request topic
	update(t, st, taskJSON("t1", "accepted", "Organization/so-1"))
	n := requester.next(t)
	if n.typ != notify.TypeEvent || n.number != "1" || n.focus != "https://gw.example.org/fhir/Task/t1" {
		t.Fatalf("status change %+v", n)
	}
	// an update without a status change is no event
	update(t, st, strings.Replace(taskJSON("t1", "accepted", "Organization/so-1"), `"value":"req-1"`, `"value":"req-1","period":{"start":"2025-01-01"}`, 1))
	prov.none(t, 300*time.Millisecond)
	other.none(t, 0)
	requester.none(t, 0)
	if got, err := f.svc.EventsSinceStart(context.Background(), "prov"); err != nil || got != 3 {
		t.Fatalf("EventsSinceStart = %d, %v", got, err)
	}
	if _, err := f.svc.EventsSinceStart(context.Background(), "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown subscription: %v", err)
	}
}

func testRetry(t *testing.T, st storage.Store) {
	f := newFixture(t, st, &clock{})
	f.start(t)
	defer f.stop(t)
	ep := newSubscriber(t)
	if err := create(t, st, subscriptionJSON("s", notify.TopicNewRequest, "Task?owner=Organization/so-1", ep.URL, 0)); err != nil {
		t.Fatal(err)
	}
	ep.next(t)
	waitStatus(t, st, "s", "active")
	ep.fail.Store(3) // three failed attempts, then the endpoint recovers
	if err := create(t, st, taskJSON("t1", "requested", "Organization/so-1")); err != nil {
		t.Fatal(err)
	}
	n := ep.next(t)
	if n.typ != notify.TypeEvent || n.number != "1" || ep.fail.Load() != 0 {
		t.Fatalf("after retries: %+v, failures left %d", n, ep.fail.Load())
	}
	if status(t, st, "s") != "active" {
		t.Fatal("a recovered endpoint left the subscription not active")
	}
	// an endpoint that never recovers exhausts the attempts: status error
	ep.fail.Store(1000)
	if err := create(t, st, taskJSON("t2", "requested", "Organization/so-1")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, st, "s", "error")
}

func testRestart(t *testing.T, st storage.Store) {
	// retries far apart, so that the failed delivery below is still
	// waiting for its next attempt when the service stops
	f := newFixtureRetry(t, st, &clock{}, 500*time.Millisecond)
	f.start(t)
	ep := newSubscriber(t)
	if err := create(t, st, subscriptionJSON("s", notify.TopicNewRequest, "Task?owner=Organization/so-1", ep.URL, 0)); err != nil {
		t.Fatal(err)
	}
	ep.next(t)
	waitStatus(t, st, "s", "active")
	// a delivery job that failed once and waits for its retry
	ep.fail.Store(1000)
	if err := create(t, st, taskJSON("t0", "requested", "Organization/so-1")); err != nil {
		t.Fatal(err)
	}
	for ep.fail.Load() == 1000 {
		time.Sleep(10 * time.Millisecond)
	}
	f.stop(t)
	ep.fail.Store(0)
	// events recorded while no worker runs wait in the database
	for i := 1; i <= 2; i++ {
		if err := create(t, st, taskJSON(fmt.Sprint("t", i), "requested", "Organization/so-1")); err != nil {
			t.Fatal(err)
		}
	}
	ep.none(t, 200*time.Millisecond)
	// a new service on the same database (a restarted gateway) delivers them
	g := newFixture(t, st, &clock{})
	g.start(t)
	defer g.stop(t)
	got := map[string]bool{}
	for range 3 {
		n := ep.next(t)
		got[n.number+" "+n.focus] = true
	}
	if !got["1 https://gw.example.org/fhir/Task/t0"] || !got["2 https://gw.example.org/fhir/Task/t1"] || !got["3 https://gw.example.org/fhir/Task/t2"] {
		t.Fatalf("after restart got %v", got)
	}
}

func testRefused(t *testing.T, st storage.Store) {
	f := newFixture(t, st, &clock{})
	f.start(t)
	defer f.stop(t)
	good := "Task?owner=Organization/so-1"
	for _, c := range []struct{ name, body string }{
		{"unknown topic", subscriptionJSON("a", "https://fhirgate.org/fhir/SubscriptionTopic/nope", good, "https://x.example/n", 0)},
		{"search criteria", subscriptionJSON("a", "Task?owner=Organization/so-1", good, "https://x.example/n", 0)},
		{"filter not offered", subscriptionJSON("a", notify.TopicNewRequest, "Task?requester=Organization/h", "https://x.example/n", 0)},
		{"filter other type", subscriptionJSON("a", notify.TopicNewRequest, "Patient?owner=Organization/h", "https://x.example/n", 0)},
		{"filter two values", subscriptionJSON("a", notify.TopicNewRequest, "Task?owner=Organization/a,Organization/b", "https://x.example/n", 0)},
		{"filter injection", subscriptionJSON("a", notify.TopicNewRequest, "Task?owner=Organization/a&status=x", "https://x.example/n", 0)},
		{"no filter", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), "backport-filter-criteria", "other", 1)},
		{"relative endpoint", subscriptionJSON("a", notify.TopicNewRequest, good, "/notify", 0)},
		{"ftp endpoint", subscriptionJSON("a", notify.TopicNewRequest, good, "ftp://x.example/n", 0)},
		{"userinfo endpoint", subscriptionJSON("a", notify.TopicNewRequest, good, "https://u:p@x.example/n", 0)},
		{"websocket", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), "rest-hook", "websocket", 1)},
		{"full-resource", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), `"id-only"`, `"full-resource"`, 1)},
		{"xml payload", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), `"application/fhir+json"`, `"application/fhir+xml"`, 1)},
		{"header injection", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), `"Authorization: Bearer s3cret"`, `"X: a\r\nHost: evil"`, 1)},
		{"created active", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), `"requested"`, `"active"`, 1)},
		{"created error", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), `"requested"`, `"error"`, 1)},
		{"bad status", strings.Replace(subscriptionJSON("a", notify.TopicNewRequest, good, "https://x.example/n", 0), `"requested"`, `"on"`, 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := create(t, st, c.body)
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusUnprocessableEntity {
				t.Fatalf("want 422, got %v", err)
			}
			if _, err := st.Read(context.Background(), "Subscription", "a"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("refused Subscription was stored: %v", err)
			}
		})
	}
	// an endpoint that does not answer 2xx to the handshake: status error
	down := newSubscriber(t)
	down.fail.Store(1)
	if err := create(t, st, subscriptionJSON("d", notify.TopicNewRequest, good, down.URL, 0)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, st, "d", "error")
	// the client may not declare it active; it asks for a new handshake
	body := subscriptionJSON("d", notify.TopicNewRequest, good, down.URL, 0)
	r, err := fhir.Parse([]byte(strings.Replace(body, `"requested"`, `"active"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	var fe *fhir.Error
	if _, _, err := st.Update(context.Background(), r, storage.UpdateOptions{}); !errors.As(err, &fe) || fe.Status != http.StatusUnprocessableEntity {
		t.Fatalf("client set status active: %v", err)
	}
	// keeping error while changing something else is fine
	update(t, st, strings.Replace(strings.Replace(body, `"requested"`, `"error"`, 1), `"reason":"test"`, `"reason":"still test"`, 1))
	update(t, st, body)
	if n := down.next(t); n.typ != notify.TypeHandshake {
		t.Fatalf("re-requested: %+v", n)
	}
	waitStatus(t, st, "d", "active")
	update(t, st, strings.Replace(strings.Replace(body, `"requested"`, `"off"`, 1), `"reason":"test"`, `"reason":"paused"`, 1))
	// and one that is not listening at all
	gone := newSubscriber(t)
	gone.Close()
	if err := create(t, st, subscriptionJSON("g", notify.TopicNewRequest, good, gone.URL, 0)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, st, "g", "error")
	// subscriptions in error get no events
	if err := create(t, st, taskJSON("t1", "requested", "Organization/so-1")); err != nil {
		t.Fatal(err)
	}
	down.none(t, 300*time.Millisecond)
}

func testHeartbeat(t *testing.T, st storage.Store) {
	clk := &clock{}
	clk.advance(time.Hour)
	f := newFixture(t, st, clk)
	f.start(t)
	defer f.stop(t)
	ep := newSubscriber(t)
	if err := create(t, st, subscriptionJSON("s", notify.TopicNewRequest, "Task?owner=Organization/so-1", ep.URL, 60)); err != nil {
		t.Fatal(err)
	}
	ep.next(t)
	waitStatus(t, st, "s", "active")
	if err := create(t, st, taskJSON("t1", "requested", "Organization/so-1")); err != nil {
		t.Fatal(err)
	}
	ep.next(t)
	ep.none(t, 200*time.Millisecond) // not due yet on the fake clock
	clk.advance(61 * time.Second)
	n := ep.next(t)
	if n.typ != notify.TypeHeartbeat || n.events != "1" || n.number != "" || n.status != "active" {
		t.Fatalf("heartbeat %+v", n)
	}
	ep.none(t, 200*time.Millisecond) // one per period
	clk.advance(61 * time.Second)
	if n := ep.next(t); n.typ != notify.TypeHeartbeat {
		t.Fatalf("second heartbeat %+v", n)
	}
}

// coreSubscriptionJSON is an R4 core Subscription: search criteria, no
// backport profile.
func coreSubscriptionJSON(id, status, criteria string) string {
	return fmt.Sprintf(`{"resourceType":"Subscription","id":%q,"status":%q,"reason":"glucose results","criteria":%q,
"channel":{"type":"rest-hook","endpoint":"https://x.example/n","payload":"application/fhir+json"}}`, id, status, criteria)
}

// testQueryBased: an R4 core (query-based) Subscription is refused with a
// 422 naming Subscription.criteria, on create and on update, unless it is
// off; an off one is stored as sent and stays unknown to the service.
func testQueryBased(t *testing.T, st storage.Store) {
	f := newFixture(t, st, &clock{})
	f.start(t)
	defer f.stop(t)
	refused := func(t *testing.T, err error) {
		t.Helper()
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Status != http.StatusUnprocessableEntity {
			t.Fatalf("want 422, got %v", err)
		}
		if len(fe.Issues) == 0 || len(fe.Issues[0].Expression) == 0 || fe.Issues[0].Expression[0] != "Subscription.criteria" {
			t.Fatalf("issues %+v, want one on Subscription.criteria", fe.Issues)
		}
		if msg := fe.Error(); !strings.Contains(msg, notify.TopicNewRequest) || !strings.Contains(msg, notify.TopicStatusChanged) {
			t.Errorf("the refusal does not name the topics offered: %s", msg)
		}
	}
	for _, status := range []string{"requested", "active", "error", ""} {
		t.Run(fmt.Sprintf("status %q", status), func(t *testing.T) {
			refused(t, create(t, st, coreSubscriptionJSON("q", status, "Observation?code=1234")))
			if _, err := st.Read(context.Background(), "Subscription", "q"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("refused Subscription was stored: %v", err)
			}
		})
	}
	// off: kept as a record; turning it on is refused
	if err := create(t, st, coreSubscriptionJSON("off", "off", "Observation?code=1234")); err != nil {
		t.Fatalf("an off query-based Subscription: %v", err)
	}
	if _, err := f.svc.EventsSinceStart(context.Background(), "off"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the service tracks an off query-based Subscription: %v", err)
	}
	r, err := fhir.Parse([]byte(coreSubscriptionJSON("off", "requested", "Observation?code=1234")))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Update(context.Background(), r, storage.UpdateOptions{})
	refused(t, err)
	if status(t, st, "off") != "off" {
		t.Errorf("the refused update changed the Subscription")
	}
}
