// Package config reads the gateway's YAML configuration file. Unknown keys
// are errors, and Validate reports every problem at once, each with its
// line, instead of stopping at the first.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole file.
type Config struct {
	Server     Server     `yaml:"server"`
	Auth       Auth       `yaml:"auth"`
	Sources    []Source   `yaml:"sources"`
	Validation Validation `yaml:"validation"`
	Summary    Summary    `yaml:"summary"`

	// file is where the config was read from, for messages.
	file string
	root *yaml.Node
}

// Server holds HTTP settings that are not flags.
type Server struct {
	// BaseURL is the public FHIR base used in links and Location headers.
	BaseURL string `yaml:"baseURL"`
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// MaxUploadBytes bounds one uploaded file (PDF, image, DICOM).
	MaxUploadBytes int64 `yaml:"maxUploadBytes"`
	// CanonicalBase is the canonical base of the gateway's own
	// OperationDefinitions (https://fhirgate.org/fhir by default).
	CanonicalBase string `yaml:"canonicalBase"`
	// MaxElements and MaxDepth bound the JSON values and nesting of one
	// request body.
	MaxElements int `yaml:"maxElements"`
	MaxDepth    int `yaml:"maxDepth"`
	// BodyMemoryBytes bounds the estimated memory of the request bodies
	// being worked on at once; others wait, then answer 503.
	BodyMemoryBytes int64 `yaml:"bodyMemoryBytes"`
	// IdleTimeout ends a request whose client sends nothing of its body,
	// or takes nothing of the response, for this long ("30s").
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MinBodyRate is the slowest average rate, in bytes per second, at
	// which a request body may arrive.
	MinBodyRate int `yaml:"minBodyRate"`
	// CORSOrigins are the browser origins ("https://app.example.org")
	// allowed to call the API from scripts; "*" allows any.
	CORSOrigins []string `yaml:"corsOrigins"`
	// Apps configures the browser apps served under /app/.
	Apps Apps `yaml:"apps"`
}

// Apps configures the patient app and the specialist workspace: public
// OAuth clients (PKCE) that must be registered at the identity provider
// with the redirect URIs <base>/app/patient/ and <base>/app/specialist/.
type Apps struct {
	// Disabled stops serving them.
	Disabled bool `yaml:"disabled"`
	// PatientClientID and SpecialistClientID are their client ids
	// (fhirgate-patient-app and fhirgate-specialist-app by default).
	PatientClientID    string `yaml:"patientClientID"`
	SpecialistClientID string `yaml:"specialistClientID"`
	// ConnectReturnURLs are more app addresses (besides the patient app's
	// own) that Patient/$connect may send the browser back to after a
	// patient's login at a source ("https://app.example.org/connected",
	// or a prefix ending in "/").
	ConnectReturnURLs []string `yaml:"connectReturnURLs"`
}

// Auth configures token verification.
type Auth struct {
	Issuers []Issuer `yaml:"issuers"`
	Clients []Client `yaml:"clients"`
}

// Issuer is an OpenID Connect provider whose access tokens are accepted.
type Issuer struct {
	URL           string `yaml:"url"`
	Audience      string `yaml:"audience"`
	FHIRUserClaim string `yaml:"fhirUserClaim"`
	// IntrospectionURL, ClientID and SecretEnv enable opaque tokens.
	IntrospectionURL string `yaml:"introspectionURL"`
	ClientID         string `yaml:"clientID"`
	SecretEnv        string `yaml:"secretEnv"`
	// PatientMapping maps token subjects to Patient references.
	PatientMapping map[string]string `yaml:"patientMapping"`
}

// Client is an OAuth client that is not an end user.
type Client struct {
	ClientID string `yaml:"clientID"`
	Role     string `yaml:"role"`
	// Organization is who the client acts for: required for providers
	// (Organization/<id> or PractitionerRole/<id>), and for system
	// clients that are custodians (it is the organization their
	// Consents must name).
	Organization string `yaml:"organization"`
	// Practitioners (providers only) are the practitioner logins, from any
	// client, that act for Organization ("Practitioner/<id>" or
	// "PractitionerRole/<id>", the token's fhirUser).
	Practitioners []string `yaml:"practitioners"`
	// Custodian (system clients only) lets the client write Consents on
	// behalf of the patients it names.
	Custodian *Custodian `yaml:"custodian"`
}

// Custodian names the patients a system client may record Consents for.
type Custodian struct {
	// Patients are "Patient/<id>" references, or "*" for every patient.
	Patients []string `yaml:"patients"`
	// IdentifierSystems: patients carrying an identifier of one of these
	// systems (a hospital's record numbers, say).
	IdentifierSystems []string `yaml:"identifierSystems"`
}

// Problems lists what is wrong with the client entry (prefixed by the
// caller with its position); none when it is valid.
func (c Client) Problems() []string {
	var out []string
	if c.ClientID == "" {
		out = append(out, "clientID is required")
	}
	refOf := func(ref string, types ...string) bool {
		t, id, ok := strings.Cut(ref, "/")
		return ok && id != "" && !strings.Contains(id, "/") && slices.Contains(types, t)
	}
	switch c.Role {
	case "provider":
		if !refOf(c.Organization, "Organization", "PractitionerRole") {
			out = append(out, "a provider needs organization: Organization/<id> or PractitionerRole/<id>")
		}
		for _, pr := range c.Practitioners {
			if !refOf(pr, "Practitioner", "PractitionerRole") {
				out = append(out, fmt.Sprintf("practitioners: %q is not Practitioner/<id> or PractitionerRole/<id>", pr))
			}
		}
		if c.Custodian != nil {
			out = append(out, "custodian is for system clients only")
		}
	case "system":
		if len(c.Practitioners) > 0 {
			out = append(out, "practitioners are for provider clients only")
		}
		if cu := c.Custodian; cu != nil {
			if !refOf(c.Organization, "Organization") {
				out = append(out, "a custodian needs organization: Organization/<id> (the organization its Consents name)")
			}
			if len(cu.Patients) == 0 && len(cu.IdentifierSystems) == 0 {
				out = append(out, "custodian needs patients or identifierSystems")
			}
			for _, pt := range cu.Patients {
				if pt != "*" && !refOf(pt, "Patient") {
					out = append(out, fmt.Sprintf("custodian.patients: %q is not Patient/<id> or *", pt))
				}
			}
		}
	default:
		out = append(out, "role must be provider or system")
	}
	return out
}

// Source is one upstream system the gateway pulls from. Config is kept as a
// YAML node: each adapter decodes (strictly) its own shape.
type Source struct {
	ID   string `yaml:"id"`
	Type string `yaml:"type"`
	// Title names the source to patients (the patient app's list of
	// sources to connect); the id when empty.
	Title  string    `yaml:"title"`
	Config yaml.Node `yaml:"config"`
}

// Validation configures fhir/validate.
type Validation struct {
	// Profiles are files of StructureDefinitions (or Bundles of them) to load.
	Profiles []string `yaml:"profiles"`
}

// Summary configures Patient/$summary.
type Summary struct {
	// Narrative is the optional text model that drafts a machine-written
	// narrative of the case summary (off when endpoint is empty).
	Narrative NarrativeModel `yaml:"narrative"`
}

// NarrativeModel is an OpenAI-compatible chat-completions endpoint.
type NarrativeModel struct {
	// Endpoint is the API base ("https://api.openai.com/v1"); https
	// except on loopback.
	Endpoint string `yaml:"endpoint"`
	Model    string `yaml:"model"`
	// APIKeyEnv names the environment variable with the bearer key.
	APIKeyEnv string        `yaml:"apiKeyEnv"`
	Timeout   time.Duration `yaml:"timeout"`
	MaxTokens int           `yaml:"maxTokens"`
}

// Load reads and strictly decodes the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, b)
}

// Parse strictly decodes YAML; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{file: name}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	c.root = &root
	return c, nil
}

// Problems collects configuration errors with their location.
type Problems struct {
	File  string
	Items []string
}

// Add records a problem at a line (0 when unknown).
func (p *Problems) Add(line int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		msg = fmt.Sprintf("%s:%d: %s", p.File, line, msg)
	} else if p.File != "" {
		msg = p.File + ": " + msg
	}
	p.Items = append(p.Items, msg)
}

// Err returns nil when there were no problems.
func (p *Problems) Err() error {
	if len(p.Items) == 0 {
		return nil
	}
	return errors.New("invalid configuration:\n  " + strings.Join(p.Items, "\n  "))
}

// Validate checks everything the core knows about; adapters validate their
// own config blocks (see SourceLine for locations).
func (c *Config) Validate() error {
	p := &Problems{File: c.file}
	c.ValidateInto(p)
	return p.Err()
}

// ValidateInto adds the core's problems to p.
func (c *Config) ValidateInto(p *Problems) {
	seen := map[string]bool{}
	for i, s := range c.Sources {
		line := c.line("sources", i)
		switch {
		case s.ID == "":
			p.Add(line, "sources[%d]: id is required", i)
		case seen[s.ID]:
			p.Add(line, "sources[%d]: duplicate id %q", i, s.ID)
		}
		seen[s.ID] = true
		if s.Type == "" {
			p.Add(line, "sources[%d]: type is required", i)
		}
	}
	for i, is := range c.Auth.Issuers {
		line := c.line("auth.issuers", i)
		if !strings.HasPrefix(is.URL, "https://") && !strings.HasPrefix(is.URL, "http://127.0.0.1") && !strings.HasPrefix(is.URL, "http://localhost") {
			p.Add(line, "auth.issuers[%d]: url must be https (http only for loopback)", i)
		}
		if is.Audience == "" {
			p.Add(line, "auth.issuers[%d]: audience is required", i)
		}
	}
	for i, cl := range c.Auth.Clients {
		line := c.line("auth.clients", i)
		for _, pr := range cl.Problems() {
			p.Add(line, "auth.clients[%d]: %s", i, pr)
		}
	}
	if n := c.Summary.Narrative; n.Endpoint != "" {
		line := c.line("summary", -1)
		if u, err := url.Parse(n.Endpoint); err != nil || u.Host == "" ||
			u.Scheme != "https" && !(u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1")) {
			p.Add(line, "summary.narrative.endpoint must be an https URL (http only on loopback)")
		}
		if n.Model == "" {
			p.Add(line, "summary.narrative.model is required with an endpoint")
		}
		if n.Timeout < 0 || n.MaxTokens < 0 {
			p.Add(line, "summary.narrative.timeout and maxTokens must not be negative")
		}
	}
	if c.Server.MaxBodyBytes < 0 {
		p.Add(c.line("server", -1), "server.maxBodyBytes must not be negative")
	}
	if c.Server.MaxUploadBytes < 0 {
		p.Add(c.line("server", -1), "server.maxUploadBytes must not be negative")
	}
	if cb := c.Server.CanonicalBase; cb != "" {
		if u, err := url.Parse(cb); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			p.Add(c.line("server", -1), "server.canonicalBase must be an absolute http(s) URL without query or fragment")
		}
	}
	for i, o := range c.Server.CORSOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			p.Add(c.line("server", -1), "server.corsOrigins[%d]: an origin is scheme://host[:port] (for example https://app.example.org), or *", i)
		}
	}
	for name, v := range map[string]int64{"maxElements": int64(c.Server.MaxElements), "maxDepth": int64(c.Server.MaxDepth),
		"bodyMemoryBytes": c.Server.BodyMemoryBytes, "idleTimeout": int64(c.Server.IdleTimeout), "minBodyRate": int64(c.Server.MinBodyRate)} {
		if v < 0 {
			p.Add(c.line("server", -1), "server.%s must not be negative", name)
		}
	}
}

// SourceLine is the line of sources[i], for adapters' messages.
func (c *Config) SourceLine(i int) int { return c.line("sources", i) }

// File is the file the config came from.
func (c *Config) File() string { return c.file }

// line finds the line of a dotted path's i-th sequence item (or the
// mapping itself when i < 0).
func (c *Config) line(path string, i int) int {
	if c.root == nil || len(c.root.Content) == 0 {
		return 0
	}
	n := c.root.Content[0]
	for _, key := range strings.Split(path, ".") {
		next := (*yaml.Node)(nil)
		if n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == key {
					next = n.Content[j+1]
				}
			}
		}
		if next == nil {
			return 0
		}
		n = next
	}
	if i >= 0 && n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i].Line
	}
	return n.Line
}
