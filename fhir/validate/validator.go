// Package validate checks FHIR R4 resources against the official
// StructureDefinitions: unknown elements (including the "_name" shapes of
// primitive extensions), cardinality, JSON types, choice types, primitive
// formats, contained and bundled resources, reference formats, required
// bindings, empty and null values, and the FHIRPath invariants that the
// FHIRPath engine can evaluate. Optional profiles (StructureDefinitions with
// a snapshot) add their cardinality, type, fixed, pattern, binding and
// invariant rules for resources that claim them in meta.profile.
//
// Every issue found is returned, each with its severity, an IssueType code
// and the FHIRPath of the element in Expression. Values from the resource,
// which may be patient data, appear only in Diagnostics.
//
// How callers use the result:
//   - strict (REST create, update, patch, transaction entries, $validate):
//     reject when HasErrors(issues) is true, with AsError(issues) (422 and
//     the whole OperationOutcome);
//   - lenient (resources pulled from sources): store the resource anyway
//     and record the issues, which then carry all severities.
package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// Options configure a Validator. The zero value is what the gateway uses.
type Options struct {
	// BestPractice also checks the best-practice invariants (such as dom-6,
	// "a resource should have narrative"), reported as warnings.
	BestPractice bool
	// SkipInvariants turns FHIRPath invariant evaluation off.
	SkipInvariants bool
}

// Validator validates resources. It is safe for concurrent use; profiles
// may be added while other goroutines validate.
type Validator struct {
	m    *model
	opts Options

	mu       sync.RWMutex
	profiles map[string]*profile
}

// New returns a validator of R4 core with the given options.
func New(opts Options) *Validator {
	return &Validator{m: core(), opts: opts, profiles: map[string]*profile{}}
}

var (
	defaultOnce sync.Once
	defaultV    *Validator
)

// Default returns the package's shared validator (zero Options, no
// profiles).
func Default() *Validator {
	defaultOnce.Do(func() { defaultV = New(Options{}) })
	return defaultV
}

// Validate validates r with the default validator.
func Validate(r *fhir.Resource) []fhir.Issue { return Default().Validate(r) }

// Validate returns every issue found in r, including those of the profiles
// r claims in meta.profile that this validator holds.
func (v *Validator) Validate(r *fhir.Resource) []fhir.Issue {
	return v.ValidateValue(r.Root())
}

// ValidateValue validates an already parsed resource.
func (v *Validator) ValidateValue(root *fjson.Value) []fhir.Issue {
	w := v.newWalker()
	w.topResource(root, nil)
	return w.issues
}

// ValidateJSON parses body and validates it; a body that is not JSON gives
// one fatal "structure" issue.
func (v *Validator) ValidateJSON(body []byte) []fhir.Issue {
	root, err := fjson.Parse(body)
	if err != nil {
		is := fhir.Issue{Severity: fhir.SeverityFatal, Code: "structure", Details: &fhir.IssueDetails{Text: "the body is not valid JSON"}, Diagnostics: err.Error()}
		var je *fjson.Error
		if errors.As(err, &je) && je.Path != "" {
			is.Expression = []string{je.Path}
		}
		return []fhir.Issue{is}
	}
	return v.ValidateValue(root)
}

// ValidateAgainst validates r and also checks it against the named profiles
// (for $validate's profile parameter), whether or not r claims them. A
// profile the validator does not hold gives an error issue.
func (v *Validator) ValidateAgainst(r *fhir.Resource, profiles ...string) []fhir.Issue {
	w := v.newWalker()
	w.topResource(r.Root(), profiles)
	return w.issues
}

func (v *Validator) newWalker() *walker {
	return &walker{v: v, m: v.m, path: make([]seg, 0, 16), counts: make([]int32, 0, 256)}
}

// HasErrors reports whether any issue is an error or fatal.
func HasErrors(issues []fhir.Issue) bool {
	for i := range issues {
		if s := issues[i].Severity; s == fhir.SeverityError || s == fhir.SeverityFatal {
			return true
		}
	}
	return false
}

// AsError returns nil when issues hold no error, else a *fhir.Error with
// status 422 that carries every issue (warnings included), for strict
// callers.
func AsError(issues []fhir.Issue) error {
	if !HasErrors(issues) {
		return nil
	}
	return &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
}

// ErrNotStructureDefinition is returned by AddProfile for JSON that is not a
// StructureDefinition with a snapshot.
var ErrNotStructureDefinition = errors.New("not a StructureDefinition with a snapshot")

// AddProfiles loads profiles from a StructureDefinition or a Bundle of them
// (other resources in the Bundle are skipped) and returns how many were
// added.
func (v *Validator) AddProfiles(data []byte) (int, error) {
	var head struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return 0, fmt.Errorf("load profiles: %w", err)
	}
	if head.ResourceType != "Bundle" {
		if err := v.AddProfile(data); err != nil {
			return 0, err
		}
		return 1, nil
	}
	n := 0
	for _, e := range head.Entry {
		if !bytes.Contains(e.Resource, []byte(`"StructureDefinition"`)) {
			continue
		}
		var rt struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(e.Resource, &rt) != nil || rt.ResourceType != "StructureDefinition" {
			continue
		}
		if err := v.AddProfile(e.Resource); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Profiles returns the canonical URLs of the loaded profiles.
func (v *Validator) Profiles() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.profiles))
	for u := range v.profiles {
		out = append(out, u)
	}
	return out
}

// HasProfile reports whether the profile with this canonical URL (an
// optional "|version" is ignored) is loaded.
func (v *Validator) HasProfile(url string) bool {
	return v.profile(url) != nil
}

func (v *Validator) profile(url string) *profile {
	url, _, _ = cutVersion(url)
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.profiles[url]
}

// UncheckedBindings lists the value sets of required bindings in R4 core
// whose codes the validator does not know (grammar-based sets such as
// mimetypes are checked by syntax instead and not listed).
func UncheckedBindings() []string {
	var out []string
	for _, u := range core().unchecked {
		if u != mimeTypesVS {
			out = append(out, u)
		}
	}
	return out
}

const mimeTypesVS = "http://hl7.org/fhir/ValueSet/mimetypes"
