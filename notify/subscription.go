package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

// Canonical URLs of the topics the gateway offers, and of the backport IG.
const (
	// TopicBase is where the gateway's SubscriptionTopic canonicals live.
	TopicBase = "https://fhirgate.org/fhir/SubscriptionTopic/"
	// TopicNewRequest fires when a second-opinion Task is created; filter
	// on owner (the recipient organization or practitioner role).
	TopicNewRequest = TopicBase + "second-opinion-request"
	// TopicStatusChanged fires when a second-opinion Task's status
	// changes; filter on requester, patient or owner.
	TopicStatusChanged = TopicBase + "second-opinion-status"
	// TopicMessage fires when a follow-up message (a Communication whose
	// partOf or basedOn names a second-opinion Task) is written; filter on
	// owner, requester or patient: the party must be the message's sender
	// or one of its recipients.
	TopicMessage = TopicBase + "second-opinion-message"

	backportSD = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	// ProfileSubscription is the backport profile of R4 Subscription.
	ProfileSubscription = backportSD + "backport-subscription"
	extFilter           = backportSD + "backport-filter-criteria"
	extHeartbeat        = backportSD + "backport-heartbeat-period"
	extTimeout          = backportSD + "backport-timeout"
	extPayloadContent   = backportSD + "backport-payload-content"
)

// Topics lists the topics the gateway offers, with the filter parameters
// each accepts.
var Topics = map[string][]string{
	TopicNewRequest:    {"owner"},
	TopicStatusChanged: {"owner", "requester", "patient"},
	TopicMessage:       {"owner", "requester", "patient"},
}

// Subscription is what the gateway needs of an R4 backport Subscription.
type Subscription struct {
	ID       string
	Status   string // requested | active | error | off
	Topic    string
	Filters  map[string]string // search parameter -> reference, e.g. owner -> Organization/x
	Endpoint string
	Headers  []string
	MIME     string
	Content  string // empty | id-only
	// Heartbeat and Timeout are in seconds (0: none / default).
	Heartbeat, Timeout int64
}

type extension struct {
	URL              string `json:"url"`
	ValueString      string `json:"valueString,omitempty"`
	ValueCode        string `json:"valueCode,omitempty"`
	ValueUnsignedInt *int64 `json:"valueUnsignedInt,omitempty"`
}

type elementExt struct {
	Extension []extension `json:"extension"`
}

type subscriptionJSON struct {
	ID        string      `json:"id"`
	Status    string      `json:"status"`
	Criteria  string      `json:"criteria"`
	XCriteria *elementExt `json:"_criteria"`
	Channel   struct {
		Extension []extension `json:"extension"`
		Type      string      `json:"type"`
		Endpoint  string      `json:"endpoint"`
		Header    []string    `json:"header"`
		Payload   string      `json:"payload"`
		XPayload  *elementExt `json:"_payload"`
	} `json:"channel"`
}

// ParseSubscription reads and validates a Subscription. allowHTTP admits
// plain http:// endpoints (tests and loopback only). Errors are
// *fhir.Error with status 422 naming what is wrong.
func ParseSubscription(raw []byte, allowHTTP bool) (*Subscription, error) {
	var j subscriptionJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fhir.BadRequest("Subscription: %v", err)
	}
	bad := func(expr, format string, args ...any) error {
		return fhir.Errorf(http.StatusUnprocessableEntity, "invalid", []string{expr}, format, args...)
	}
	s := &Subscription{ID: j.ID, Status: j.Status, Topic: j.Criteria, Filters: map[string]string{},
		Endpoint: j.Channel.Endpoint, Headers: j.Channel.Header, MIME: j.Channel.Payload}
	switch s.Status {
	case "requested", "active", "error", "off":
	default:
		return nil, bad("Subscription.status", "status must be requested, active, error or off")
	}
	params, ok := Topics[s.Topic]
	if !ok {
		return nil, bad("Subscription.criteria", "unknown topic %q: this server offers %s, %s and %s", s.Topic, TopicNewRequest, TopicStatusChanged, TopicMessage)
	}
	if j.XCriteria != nil {
		for _, e := range j.XCriteria.Extension {
			if e.URL != extFilter {
				continue
			}
			p, v, err := parseFilter(e.ValueString)
			if err != nil {
				return nil, bad("Subscription.criteria.extension", "%v", err)
			}
			if !slices.Contains(params, p) {
				return nil, bad("Subscription.criteria.extension", "topic %s cannot be filtered on %q (only %s)", s.Topic, p, strings.Join(params, ", "))
			}
			if _, dup := s.Filters[p]; dup {
				return nil, bad("Subscription.criteria.extension", "filter %q given twice", p)
			}
			s.Filters[p] = v
		}
	}
	if len(s.Filters) == 0 {
		// a subscription to every Task of the gateway would leak who asks
		// whom for opinions
		return nil, bad("Subscription.criteria.extension", "a filter (e.g. Task?owner=Organization/x) is required")
	}
	if j.Channel.Type != "rest-hook" {
		return nil, bad("Subscription.channel.type", "only rest-hook channels are supported")
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(allowHTTP && u.Scheme == "http")) || u.User != nil {
		return nil, bad("Subscription.channel.endpoint", "the endpoint must be an absolute https URL")
	}
	for _, h := range s.Headers {
		name, _, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(h, "\r\n") {
			return nil, bad("Subscription.channel.header", "headers must be 'Name: value'")
		}
	}
	if mt, _, _ := strings.Cut(s.MIME, ";"); strings.TrimSpace(mt) != "application/fhir+json" {
		return nil, bad("Subscription.channel.payload", "payload must be application/fhir+json")
	}
	s.Content = "id-only"
	if j.Channel.XPayload != nil {
		for _, e := range j.Channel.XPayload.Extension {
			if e.URL == extPayloadContent {
				s.Content = e.ValueCode
			}
		}
	}
	if s.Content != "empty" && s.Content != "id-only" {
		// full-resource would put health data in a POST to a channel the
		// gateway cannot authenticate
		return nil, bad("Subscription.channel.payload.extension", "payload content must be empty or id-only")
	}
	for _, e := range j.Channel.Extension {
		if e.ValueUnsignedInt == nil {
			continue
		}
		switch e.URL {
		case extHeartbeat:
			s.Heartbeat = *e.ValueUnsignedInt
		case extTimeout:
			s.Timeout = *e.ValueUnsignedInt
		}
	}
	if s.Heartbeat < 0 || s.Timeout < 0 || s.Timeout > 300 {
		return nil, bad("Subscription.channel.extension", "heartbeat period and timeout must be non-negative, timeout at most 300 s")
	}
	return s, nil
}

// parseFilter reads "Task?owner=Organization/x".
func parseFilter(f string) (param, value string, err error) {
	q, ok := strings.CutPrefix(f, "Task?")
	if !ok {
		return "", "", fmt.Errorf("filter %q must start with Task?", f)
	}
	p, v, ok := strings.Cut(q, "=")
	if !ok || strings.ContainsAny(v, "&,") || !validRef(v) {
		return "", "", fmt.Errorf("filter %q must be Task?<param>=<Type>/<id> with one value", f)
	}
	return p, v, nil
}

func validRef(v string) bool {
	t, id, ok := strings.Cut(v, "/")
	return ok && fhir.IsResourceType(t) && fhir.ValidID(id)
}
