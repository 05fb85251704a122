// Package drafting asks a text model, over an OpenAI-compatible
// chat-completions endpoint, to draft a narrative of a computed case
// summary. It is off unless configured. What it sends is built from the
// CaseSummary alone, which the gateway computes over the record as
// released to the recipient: nothing the patient's Consent withholds from
// that recipient can reach the model. It sends no name, identifier,
// address or birth date (age and sex only), and no free text of the
// record beyond the coded items' display names. The draft it returns is
// shown as a separate, labelled, machine-written section and never
// replaces a computed one.
package drafting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/referral/knowledge"
)

// Config configures the model endpoint.
type Config struct {
	// Endpoint is the API base ("https://api.openai.com/v1" or a
	// self-hosted server's); /chat/completions is appended. https is
	// required except on loopback.
	Endpoint string `yaml:"endpoint"`
	// Model is the model name the endpoint expects.
	Model string `yaml:"model"`
	// APIKeyEnv names the environment variable holding the bearer key
	// (empty: no key, for a local server).
	APIKeyEnv string `yaml:"apiKeyEnv"`
	// Timeout bounds one request (default 60s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxTokens bounds the answer (default 800).
	MaxTokens int `yaml:"maxTokens"`
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("narrative model configuration")

// ErrModel reports a failed or unusable answer from the model endpoint.
var ErrModel = errors.New("narrative model")

// Validate checks the configuration.
func (c Config) Validate() error {
	u, err := url.Parse(c.Endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: endpoint must be an absolute URL", ErrConfig)
	}
	loopback := u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1"
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
		return fmt.Errorf("%w: endpoint must be https (http only on loopback)", ErrConfig)
	}
	if c.Model == "" {
		return fmt.Errorf("%w: model is required", ErrConfig)
	}
	if c.Timeout < 0 || c.MaxTokens < 0 {
		return fmt.Errorf("%w: timeout and maxTokens must not be negative", ErrConfig)
	}
	return nil
}

// Client drafts narratives.
type Client struct {
	cfg  Config
	key  string
	http *http.Client
	host string
}

// New checks cfg and reads the key from its environment variable (an
// empty variable named by APIKeyEnv is an error). httpClient may be nil.
func New(cfg Config, httpClient *http.Client) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.MaxTokens == 0 {
		cfg.MaxTokens = 800
	}
	c := &Client{cfg: cfg, http: httpClient}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if cfg.APIKeyEnv != "" {
		c.key = os.Getenv(cfg.APIKeyEnv)
		if c.key == "" {
			return nil, fmt.Errorf("%w: environment variable %s is empty", ErrConfig, cfg.APIKeyEnv)
		}
	}
	u, _ := url.Parse(cfg.Endpoint)
	c.host = u.Host
	return c, nil
}

const systemPrompt = `You draft a short clinical narrative for a specialist giving a second opinion.
Use only the facts in the JSON the user sends: computed abnormal results, trends, risks and missing tests of one patient.
Do not add diagnoses, values, dates or advice that the data does not state. Keep the numbers, units and dates as given.
Write three to six short paragraphs in plain English: the main problems, what is abnormal or worsening, the computed risks, and what is missing.
Say once that this is a machine-written draft to be checked against the computed sections.`

// Draft asks the model for a narrative of cs.
func (c *Client) Draft(ctx context.Context, cs *referral.CaseSummary) (*referral.Draft, error) {
	facts, err := json.Marshal(Facts(cs))
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{
		"model": c.cfg.Model,
		"messages": []map[string]string{
			{"role": "system", "content": systemPrompt},
			{"role": "user", "content": string(facts)},
		},
		"max_tokens":  c.cfg.MaxTokens,
		"temperature": 0.2,
	})
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.Endpoint, "/")+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s did not answer: %w", ErrModel, c.host, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer of %s: %w", ErrModel, c.host, err)
	}
	if resp.StatusCode != http.StatusOK {
		// the answer body may echo what was sent: it is not kept
		return nil, fmt.Errorf("%w: %s answered HTTP %d", ErrModel, c.host, resp.StatusCode)
	}
	var out struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("%w: %s answered something that is not a chat completion", ErrModel, c.host)
	}
	if len(out.Choices) == 0 || strings.TrimSpace(out.Choices[0].Message.Content) == "" {
		return nil, fmt.Errorf("%w: %s answered no text", ErrModel, c.host)
	}
	model := out.Model
	if model == "" {
		model = c.cfg.Model
	}
	return &referral.Draft{Text: strings.TrimSpace(out.Choices[0].Message.Content), Model: model, Endpoint: c.host}, nil
}

// Facts is what the model is sent: the computed summary, de-identified
// (age and sex, no name, identifier, address or date of birth).
func Facts(cs *referral.CaseSummary) map[string]any {
	age := ""
	if a := cs.Patient.AgeAt(cs.AsOf); a >= 0 {
		age = fmt.Sprintf("%d years", int(a))
	}
	val := func(v float64, unit string) string {
		u := knowledge.DisplayUnit(unit)
		return strings.TrimSpace(knowledge.FormatNumber(v) + " " + u)
	}
	var flags []map[string]string
	for _, f := range cs.Flags {
		m := map[string]string{"test": f.Name, "flag": f.Interpretation, "why": f.Rule, "date": referral.HumanDate(f.Date)}
		if f.HasValue {
			m["value"] = val(f.Value, f.Unit)
		}
		flags = append(flags, m)
		if len(flags) == 60 { // most recent first: enough for a narrative
			break
		}
	}
	var trends []map[string]string
	for _, t := range cs.Trends {
		m := map[string]string{"test": t.Name, "results": fmt.Sprint(t.Count), "latest": val(t.Latest.Value, t.Unit) + " on " + referral.HumanDate(t.Latest.Date), "direction": t.Direction}
		if t.HasSlope {
			m["changePerYear"] = val(t.SlopePerYear, t.Unit)
		}
		if t.Worst != nil {
			m["worst"] = val(t.Worst.Value, t.Unit) + " (" + t.Worst.Interpretation + ") on " + referral.HumanDate(t.Worst.Date)
		}
		if t.Note != "" {
			m["note"] = t.Note
		}
		trends = append(trends, m)
	}
	var risks []map[string]string
	for _, r := range cs.Risks {
		m := map[string]string{"risk": r.Name, "formula": r.Formula}
		switch {
		case r.Computable:
			if r.HasValue {
				m["value"] = val(r.Value, r.Unit)
			}
			m["category"], m["interpretation"] = r.Category, r.Interpretation
		case r.NotApplicable != "":
			m["notApplicable"] = r.NotApplicable
		default:
			m["notComputable"] = "missing " + strings.Join(r.Missing, ", ")
		}
		risks = append(risks, m)
	}
	var gaps []map[string]string
	for _, g := range cs.Gaps() {
		m := map[string]string{"expected": g.Text, "because": g.Trigger}
		if g.LastDone.IsZero() {
			m["lastDone"] = "never in the record"
		} else {
			m["lastDone"] = referral.HumanDate(g.LastDone)
		}
		if g.Value != "" {
			m["value"] = g.Value
		}
		gaps = append(gaps, m)
	}
	var conds, meds []string
	for _, r := range cs.ActiveConditions {
		conds = append(conds, cs.Display(r))
	}
	for _, r := range cs.ActiveMedications {
		meds = append(meds, cs.Display(r))
	}
	return map[string]any{
		"asOf": referral.HumanDate(cs.AsOf), "age": age, "sex": cs.Patient.Sex,
		"activeConditions": conds, "activeMedications": meds,
		"abnormalResults": flags, "trends": trends, "risks": risks, "missingTestsAndReviews": gaps,
	}
}
