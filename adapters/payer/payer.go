// Package payer is the "payer" source type: an insurer's FHIR R4 endpoint.
// It is a FHIR source like any other (its Fetch pulls the patient's
// Coverage, consolidated into the record), and it answers the
// second-opinion workflow's coverage questions (referral.Payer): a
// CoverageEligibilityRequest submitted with
// CoverageEligibilityRequest/$submit, and, where the insurer requires
// it, a pre-authorisation Claim (use preauthorization) with Claim/$submit.
// Both operations are R4 core's (Financial module); each request is sent
// as a collection Bundle holding the request first and the resources it
// references after, and the answer is the response resource (a Bundle
// holding it is accepted too).
//
// India's Health Claims Exchange (HCX, and NHA's NHCX) carries the same
// FHIR resources over an asynchronous protocol: see the README's
// "Coverage and pre-authorisation" for how an HCX client would take this
// package's place behind referral.Payer.
package payer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/adapters/fhirrest"
	"github.com/fhirgate/fhirgate/adapters/upstream"
	"github.com/fhirgate/fhirgate/fhir"
)

// Type is the source type name in the config file.
const Type = "payer"

// Identifier is an identifier system and value.
type Identifier struct {
	System string `yaml:"system"`
	Value  string `yaml:"value"`
}

// Coding is a code of a code system.
type Coding struct {
	System  string `yaml:"system"`
	Code    string `yaml:"code"`
	Display string `yaml:"display"`
}

// Config is the config block of a "payer" source: a "fhir" source's keys
// (baseURL, auth, timeouts, retries; types defaults to Coverage) and what
// makes it an insurer.
type Config struct {
	fhirrest.Config `yaml:",inline"`
	// Payors identify the insurer: a Coverage is this payer's when one of
	// its payor references names an Organization with one of these
	// identifiers (or carries one itself). Required.
	Payors []Identifier `yaml:"payors"`
	// Organization is the insurer's Organization on this gateway
	// ("Organization/acme"), also matched against Coverage.payor.
	Organization string `yaml:"organization"`
	// Category and ProductOrService name the benefit asked about; by
	// default ex-benefitcategory 3 (Consultation) and SNOMED CT 11429006
	// (Consultation).
	Category         Coding `yaml:"category"`
	ProductOrService Coding `yaml:"productOrService"`
}

// Default benefit codes.
var (
	DefaultCategory         = Coding{System: "http://terminology.hl7.org/CodeSystem/ex-benefitcategory", Code: "3", Display: "Consultation"}
	DefaultProductOrService = Coding{System: "http://snomed.info/sct", Code: "11429006", Display: "Consultation"}
)

// Validate adds every problem of c to p.
func (c *Config) Validate(p *adapters.Problems, opts adapters.Options) {
	c.Config.Validate(p, opts)
	if len(c.Payors) == 0 && c.Organization == "" {
		p.Add("payors", "is required: the identifiers (system and value) of the insurer, or organization")
	}
	for i, id := range c.Payors {
		if id.System == "" || id.Value == "" {
			p.Add(fmt.Sprintf("payors[%d]", i), "needs a system and a value")
		}
	}
	if c.Organization != "" {
		if typ, id, ok := strings.Cut(c.Organization, "/"); !ok || typ != "Organization" || !fhir.ValidID(id) {
			p.Add("organization", "must be Organization/<id>")
		}
	}
	for _, cd := range []struct {
		path string
		c    Coding
	}{{"category", c.Category}, {"productOrService", c.ProductOrService}} {
		if (cd.c.System == "") != (cd.c.Code == "") {
			p.Add(cd.path, "needs both a system and a code")
		}
	}
}

// Factory opens "payer" sources.
var Factory = adapters.ConfigFactory[Config](func(id string, cfg Config, opts adapters.Options) (adapters.Source, error) {
	s, err := New(id, cfg, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
})

// Source is a "payer" source.
type Source struct {
	*fhirrest.Source
	cfg Config
}

var (
	_ adapters.Source        = (*Source)(nil)
	_ adapters.PatientFinder = (*Source)(nil)
)

// New returns a payer source.
func New(id string, cfg Config, opts adapters.Options) (*Source, error) {
	p := &adapters.Problems{}
	cfg.Validate(p, opts.WithDefaults())
	if len(p.Items) > 0 {
		return nil, adapters.ProblemsError(p.Items)
	}
	if len(cfg.Types) == 0 {
		cfg.Types = []string{"Coverage"} // what a pull brings from an insurer
	}
	if cfg.Category.Code == "" {
		cfg.Category = DefaultCategory
	}
	if cfg.ProductOrService.Code == "" {
		cfg.ProductOrService = DefaultProductOrService
	}
	fs, err := fhirrest.New(id, cfg.Config, opts)
	if err != nil {
		return nil, err
	}
	return &Source{Source: fs, cfg: cfg}, nil
}

// Covers reports whether the insurer answers for a Coverage: one of its
// payor references is the configured Organization, or names (or is
// resolved to) an Organization with one of the configured identifiers.
func (s *Source) Covers(coverage *fhir.Resource, payors []*fhir.Resource) bool {
	match := func(system, value string) bool {
		return slices.ContainsFunc(s.cfg.Payors, func(id Identifier) bool { return id.System == system && id.Value == value })
	}
	for _, p := range coverage.Root().Get("payor").Elems() {
		ref := p.Get("reference").String()
		if s.cfg.Organization != "" && (ref == s.cfg.Organization || strings.HasSuffix(ref, "/"+s.cfg.Organization)) {
			return true
		}
		if id := p.Get("identifier"); id != nil && match(id.Get("system").String(), id.Get("value").String()) {
			return true
		}
	}
	for _, org := range payors {
		if s.cfg.Organization != "" && "Organization/"+org.ID == s.cfg.Organization {
			return true
		}
		for _, id := range org.Root().Get("identifier").Elems() {
			if match(id.Get("system").String(), id.Get("value").String()) {
				return true
			}
		}
	}
	return false
}

// Benefit names the benefit the gateway asks about.
func (s *Source) Benefit() (category, productOrService [3]string) {
	return [3]string{s.cfg.Category.System, s.cfg.Category.Code, s.cfg.Category.Display},
		[3]string{s.cfg.ProductOrService.System, s.cfg.ProductOrService.Code, s.cfg.ProductOrService.Display}
}

// responses names the response of each request the insurer takes.
var responses = map[string]string{"CoverageEligibilityRequest": "CoverageEligibilityResponse", "Claim": "ClaimResponse"}

// ErrNoAnswer wraps an answer that holds no response of the kind asked
// (the insurer answered with an OperationOutcome, or something else).
var ErrNoAnswer = errors.New("the insurer's answer holds no response")

// Submit sends a request Bundle (a collection: the CoverageEligibilityRequest
// or Claim first, then what it references) with [base]/<type>/$submit and
// returns the insurer's response (the CoverageEligibilityResponse or
// ClaimResponse, alone or in a Bundle). Failures are *adapters.Error:
// ErrUnavailable or ErrTimeout when the insurer cannot be reached,
// ErrRejected when it refuses the request, ErrMalformed when the answer
// holds no response.
func (s *Source) Submit(ctx context.Context, bundle *fhir.Resource) (*fhir.Resource, error) {
	entries := bundle.Root().Get("entry").Elems()
	if bundle.Type != "Bundle" || len(entries) == 0 {
		return nil, errors.New("payer: Submit takes a Bundle led by the request")
	}
	typ := entries[0].Get("resource").Get("resourceType").String()
	want, ok := responses[typ]
	if !ok {
		return nil, fmt.Errorf("payer: the insurer takes no %s", typ)
	}
	op, path := "submit "+typ, typ+"/$submit"
	resp, err := s.Client().Do(ctx, &upstream.Request{
		Op: op, Method: http.MethodPost, URL: path, Body: bundle.Raw,
		Header: http.Header{"Content-Type": {"application/fhir+json"}, "Accept": {"application/fhir+json"}},
	})
	if err != nil {
		return nil, adapters.WithSource(s.ID(), err)
	}
	r, err := fhir.Parse(resp.Body)
	if err != nil {
		return nil, s.Client().Fail(op, http.MethodPost, path, resp.Status, fmt.Errorf("%w: %v", adapters.ErrMalformed, err))
	}
	if r.Type == want {
		return r, nil
	}
	if r.Type == "Bundle" {
		for _, e := range r.Root().Get("entry").Elems() {
			if e.Get("resource").Get("resourceType").String() == want {
				return fhir.FromValue(e.Get("resource"))
			}
		}
	}
	return nil, s.Client().Fail(op, http.MethodPost, path, resp.Status, fmt.Errorf("%w: %w (a %s)", adapters.ErrMalformed, ErrNoAnswer, r.Type))
}
