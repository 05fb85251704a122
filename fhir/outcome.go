package fhir

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Issue severities.
const (
	SeverityFatal       = "fatal"
	SeverityError       = "error"
	SeverityWarning     = "warning"
	SeverityInformation = "information"
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity string `json:"severity"`
	// Code is an IssueType code: invalid, structure, required, value,
	// not-found, deleted, conflict, processing, not-supported, ...
	Code    string        `json:"code"`
	Details *IssueDetails `json:"details,omitempty"`
	// Diagnostics may carry values from the request (and so patient data):
	// it goes to the caller only, never into a log.
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// IssueDetails is the text-only CodeableConcept used in Issue.details.
type IssueDetails struct {
	Text string `json:"text"`
}

// OperationOutcome is the FHIR OperationOutcome resource, as the gateway writes it.
type OperationOutcome struct {
	ResourceType string      `json:"resourceType"`
	Extension    []Extension `json:"extension,omitempty"`
	Issue        []Issue     `json:"issue"`
}

// Extension is a FHIR extension with a string value (the few the gateway
// writes on outcomes, such as the request id).
type Extension struct {
	URL         string `json:"url"`
	ValueString string `json:"valueString"`
}

// NewOutcome returns an OperationOutcome with the given issues.
func NewOutcome(issues ...Issue) *OperationOutcome {
	if issues == nil {
		issues = []Issue{}
	}
	return &OperationOutcome{ResourceType: "OperationOutcome", Issue: issues}
}

// JSON returns the outcome as JSON.
func (o *OperationOutcome) JSON() []byte {
	b, err := json.Marshal(o)
	if err != nil { // cannot happen for these plain types
		panic(err)
	}
	return b
}

// HasErrors reports whether any issue is an error or fatal.
func (o *OperationOutcome) HasErrors() bool {
	for _, is := range o.Issue {
		if is.Severity == SeverityError || is.Severity == SeverityFatal {
			return true
		}
	}
	return false
}

// NewIssue builds an error-severity issue with a details text and optional
// FHIRPath expressions.
func NewIssue(code, text string, expr ...string) Issue {
	return Issue{Severity: SeverityError, Code: code, Details: &IssueDetails{Text: text}, Expression: expr}
}

// Error is an error that carries the HTTP status and the OperationOutcome
// issues to answer with. Every error path of the gateway that is the
// caller's fault produces one.
type Error struct {
	Status int
	Issues []Issue
}

func (e *Error) Error() string {
	if len(e.Issues) == 0 {
		return http.StatusText(e.Status)
	}
	is := e.Issues[0]
	msg := is.Code
	if is.Details != nil {
		msg = is.Details.Text
	}
	if len(is.Expression) > 0 {
		msg += " at " + is.Expression[0]
	}
	if len(e.Issues) > 1 {
		msg += fmt.Sprintf(" (and %d more issues)", len(e.Issues)-1)
	}
	return msg
}

// Outcome returns the error as an OperationOutcome.
func (e *Error) Outcome() *OperationOutcome { return NewOutcome(e.Issues...) }

// Errorf returns an *Error with one error issue.
func Errorf(status int, code string, expr []string, format string, args ...any) *Error {
	return &Error{Status: status, Issues: []Issue{NewIssue(code, fmt.Sprintf(format, args...), expr...)}}
}

// BadRequest is a 400 with issue code "invalid".
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "invalid", nil, format, args...)
}

// NotFoundError is a 404 with issue code "not-found".
func NotFoundError(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "not-found", nil, format, args...)
}

// Unprocessable is a 422 with issue code "processing".
func Unprocessable(format string, args ...any) *Error {
	return Errorf(http.StatusUnprocessableEntity, "processing", nil, format, args...)
}
