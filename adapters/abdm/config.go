package abdm

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fhirgate/fhirgate/adapters"
)

// Type is the source type name in the config file.
const Type = "abdm"

// API versions.
const (
	V05 = "v0.5"
	V3  = "v3"
)

// Purpose codes (STANDARDS.md §9.3).
var purposeCodes = map[string]string{
	"CAREMGT": "Care Management", "BTG": "Break the Glass", "PUBHLTH": "Public Health",
	"HPAYMT": "Healthcare Payment", "DSRCH": "Disease Specific Healthcare Research", "PATRQT": "Self Requested",
}

// HITypes are the health-information types a consent may name.
var HITypes = []string{"OPConsultation", "Prescription", "DischargeSummary", "DiagnosticReport",
	"ImmunizationRecord", "HealthDocumentRecord", "WellnessRecord", "Invoice"}

// Config is the config block of an "abdm" source (DESIGN.md "Stable
// outside contract" names the first six keys).
type Config struct {
	// GatewayURL is the HIE-CM gateway base (https://dev.abdm.gov.in/gateway).
	GatewayURL string `yaml:"gatewayURL"`
	// APIVersion is v0.5 or v3.
	APIVersion string `yaml:"apiVersion"`
	// ClientID and the secret in the environment variable SecretEnv get the
	// session token.
	ClientID  string `yaml:"clientID"`
	SecretEnv string `yaml:"secretEnv"`
	// HIUID is the gateway's id as an HIU (X-HIU-ID, consent.hiu.id).
	HIUID string `yaml:"hiuID"`
	// CallbackBaseURL is where the gateway calls back, ending in /abdm; the
	// data push URL is derived from it.
	CallbackBaseURL string `yaml:"callbackBaseURL"`
	// CMID is the consent manager suffix sent as X-CM-ID; default "sbx".
	CMID string `yaml:"cmID"`
	// JWKSURL is where the gateway publishes the keys its callback tokens
	// are signed with; default the version's certs path on GatewayURL.
	JWKSURL string `yaml:"jwksURL"`
	// Issuer, when set, must equal the callback tokens' iss.
	Issuer string `yaml:"issuer"`
	// Purpose is the consent purpose code; default CAREMGT.
	Purpose string `yaml:"purpose"`
	// HITypes asked for; default every type but Invoice.
	HITypes []string `yaml:"hiTypes"`
	// Requester is the person the consent request names.
	Requester Requester `yaml:"requester"`
	// DataYears is how far back the asked date range reaches; default 10.
	DataYears int `yaml:"dataYears"`
	// ConsentValidity is how long the granted consent lasts
	// (permission.dataEraseAt); default 720h (30 days).
	ConsentValidity time.Duration `yaml:"consentValidity"`
	// PushWindow is how long a transaction's key material is kept waiting
	// for the HIP's push; default 20m (the v3 docs' window).
	PushWindow time.Duration `yaml:"pushWindow"`
	// PollInterval is the Retry-After a waiting Fetch suggests; default 30s.
	PollInterval time.Duration `yaml:"pollInterval"`
}

// Requester names the person (doctor) asking for the consent.
type Requester struct {
	Name   string `yaml:"name"`
	Type   string `yaml:"type"`
	Value  string `yaml:"value"`
	System string `yaml:"system"`
}

func (c *Config) defaults() {
	if c.CMID == "" {
		c.CMID = "sbx"
	}
	if c.Purpose == "" {
		c.Purpose = "CAREMGT"
	}
	if len(c.HITypes) == 0 {
		c.HITypes = HITypes[:7]
	}
	if c.Requester.Name == "" {
		c.Requester.Name = "fhirgate"
	}
	if c.DataYears == 0 {
		c.DataYears = 10
	}
	if c.ConsentValidity == 0 {
		c.ConsentValidity = 30 * 24 * time.Hour
	}
	if c.PushWindow == 0 {
		c.PushWindow = 20 * time.Minute
	}
	if c.PollInterval == 0 {
		c.PollInterval = 30 * time.Second
	}
	c.GatewayURL = strings.TrimRight(c.GatewayURL, "/")
	c.CallbackBaseURL = strings.TrimRight(c.CallbackBaseURL, "/")
	if c.JWKSURL == "" && c.GatewayURL != "" {
		c.JWKSURL = c.GatewayURL + pathsFor(c.APIVersion).certs
	}
}

// Validate adds every problem of c to p.
func (c *Config) Validate(p *adapters.Problems, opts adapters.Options) {
	checkURL := func(key, v string, required bool) {
		if v == "" {
			if required {
				p.Add(key, "is required")
			}
			return
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.Add(key, "must be an absolute http(s) URL")
		}
	}
	checkURL("gatewayURL", c.GatewayURL, true)
	checkURL("callbackBaseURL", c.CallbackBaseURL, true)
	checkURL("jwksURL", c.JWKSURL, false)
	if c.CallbackBaseURL != "" && !strings.HasSuffix(strings.TrimRight(c.CallbackBaseURL, "/"), "/abdm") {
		p.Add("callbackBaseURL", "must end in /abdm (the gateway serves the callbacks there)")
	}
	switch c.APIVersion {
	case V05, V3:
	case "":
		p.Add("apiVersion", "is required (v0.5 or v3)")
	default:
		p.Add("apiVersion", "must be v0.5 or v3")
	}
	if c.ClientID == "" {
		p.Add("clientID", "is required")
	}
	if c.HIUID == "" {
		p.Add("hiuID", "is required")
	}
	if c.SecretEnv == "" {
		p.Add("secretEnv", "is required")
	} else if v, ok := opts.WithDefaults().LookupEnv(c.SecretEnv); !ok || v == "" {
		p.Add("secretEnv", "environment variable %s is not set", c.SecretEnv)
	}
	if c.Purpose != "" {
		if _, ok := purposeCodes[c.Purpose]; !ok {
			p.Add("purpose", "%q is not an ABDM purpose code", c.Purpose)
		}
	}
	for i, t := range c.HITypes {
		if !slices.Contains(HITypes, t) {
			p.Add(fmt.Sprintf("hiTypes[%d]", i), "%q is not an ABDM hiType", t)
		}
	}
	if c.DataYears < 0 {
		p.Add("dataYears", "must not be negative")
	}
	for key, d := range map[string]time.Duration{"consentValidity": c.ConsentValidity, "pushWindow": c.PushWindow, "pollInterval": c.PollInterval} {
		if d < 0 {
			p.Add(key, "must not be negative")
		}
	}
}

// NewFactory returns the "abdm" factory. Unlike other sources an ABDM
// source keeps state between callbacks (consent requests, artefacts, open
// transfers) and is handed the HIPs' records when they push them, so it
// needs somewhere to keep its state and the record to file into:
//
//	reg.Register(abdm.Type, abdm.NewFactory(abdm.Deps{State: store.AdapterState(), Records: consolidator}))
func NewFactory(deps Deps) adapters.Factory { return factory{deps: deps} }

type factory struct {
	deps Deps
}

func (f factory) Validate(node *yaml.Node, opts adapters.Options) []adapters.Problem {
	_, ps := decode(node, opts)
	return ps
}

func (f factory) Open(id string, node *yaml.Node, opts adapters.Options) (adapters.Source, error) {
	cfg, ps := decode(node, opts)
	if len(ps) > 0 {
		return nil, adapters.ProblemsError(ps)
	}
	return New(id, cfg, f.deps, opts)
}

func decode(node *yaml.Node, opts adapters.Options) (Config, []adapters.Problem) {
	var cfg Config
	ps := adapters.Decode(node, &cfg)
	p := &adapters.Problems{Root: node}
	cfg.Validate(p, opts)
	return cfg, append(ps, p.Items...)
}
