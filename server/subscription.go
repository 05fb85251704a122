package server

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// SubscriptionService is what the server needs of the notification
// service (*notify.Service): Subscriptions themselves are ordinary
// resources, validated and acted on by the store's write hooks.
type SubscriptionService interface {
	// EventsSinceStart is a Subscription's event count; storage.ErrNotFound
	// when the service does not know it.
	EventsSinceStart(ctx context.Context, id string) (int64, error)
	// Check refuses (422) a Subscription the service would not serve.
	Check(r *fhir.Resource) error
}

// statusDefinition is the canonical URL of Subscription/$status.
const statusDefinition = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"

// topicCanonicalExt is the backport IG's extension listing, on
// CapabilityStatement.rest.resource, the SubscriptionTopics a server offers.
const topicCanonicalExt = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"

// RegisterSubscriptions answers Subscription/[id]/$status and states in the
// CapabilityStatement what the notification service serves: the backport
// profile, its topics, and that query-based (R4 core) Subscriptions are
// refused unless off (the service's store hook refuses them); call before
// serving.
func (s *Server) RegisterSubscriptions(svc SubscriptionService) {
	s.subs = svc
	s.RegisterOperation(Operation{
		Name: "status", Definition: statusDefinition,
		Instance: true, Types: []string{"Subscription"}, Idempotent: true,
		Handler: func(c *gin.Context, _, id string) { s.subscriptionStatus(c, svc, id) },
	})
	topics := slices.Sorted(maps.Keys(notify.Topics))
	s.AddCapabilities(func(cs *CapabilityStatement) {
		for i := range cs.Rest {
			for j := range cs.Rest[i].Resource {
				r := &cs.Rest[i].Resource[j]
				if r.Type != "Subscription" {
					continue
				}
				r.SupportedProfile = append(r.SupportedProfile, notify.ProfileSubscription)
				for _, t := range topics {
					r.Extension = append(r.Extension, CSExtension{URL: topicCanonicalExt, ValueCanonical: t})
				}
				r.Documentation = "Only topic-based Subscriptions of the R4 backport profile (" + notify.ProfileSubscription + ") are served, " +
					"on the topics " + strings.Join(topics, " and ") + ", with a rest-hook channel and empty or id-only payloads. " +
					"Query-based (R4 core) Subscriptions, whose criteria is a search, are refused with 422 unless their status is off."
			}
		}
	})
}

// subscriptionStatus answers $status: a searchset Bundle holding the
// SubscriptionStatus Parameters of type query-status.
func (s *Server) subscriptionStatus(c *gin.Context, svc SubscriptionService, id string) {
	// $status reads the Subscription: it needs what a read needs
	if _, err := s.authorize(c, InteractionRead, "", "Subscription"); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	res, err := s.guard(c).Read(ctx, "Subscription", id)
	if err != nil {
		s.failRead(c, res, err, "Subscription/"+id)
		return
	}
	events, err := svc.EventsSinceStart(ctx, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	base := s.baseURL(c.Request)
	root := res.Root()
	type param struct {
		Name           string            `json:"name"`
		ValueReference map[string]string `json:"valueReference,omitempty"`
		ValueCanonical string            `json:"valueCanonical,omitempty"`
		ValueCode      string            `json:"valueCode,omitempty"`
		ValueString    string            `json:"valueString,omitempty"`
	}
	status, _ := json.Marshal(map[string]any{
		"resourceType": "Parameters",
		"meta":         map[string]any{"profile": []string{"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"}},
		"parameter": []param{
			{Name: "subscription", ValueReference: map[string]string{"reference": base + "/Subscription/" + id}},
			{Name: "topic", ValueCanonical: root.Get("criteria").String()},
			{Name: "status", ValueCode: root.Get("status").String()},
			{Name: "type", ValueCode: "query-status"},
			{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(events, 10)},
		},
	})
	body, err := json.Marshal(map[string]any{
		"resourceType": "Bundle",
		"id":           uuid.NewString(),
		"type":         "searchset",
		"timestamp":    s.now().UTC().Format(time.RFC3339Nano),
		"total":        1,
		"entry": []map[string]any{{
			"fullUrl":  "urn:uuid:" + uuid.NewString(),
			"resource": json.RawMessage(status),
			"search":   map[string]string{"mode": "match"},
		}},
	})
	if err != nil {
		s.fail(c, fhir.Errorf(http.StatusInternalServerError, "exception", nil, "status bundle: %v", err))
		return
	}
	s.writeJSON(c, http.StatusOK, body)
}
