package server

import (
	"context"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/gin-gonic/gin"
)

// ProfileValidator is a Validator that also validates against named
// profiles ($validate's profile parameter).
type ProfileValidator interface {
	Validator
	HasProfile(url string) bool
	ValidateAgainst(r *fhir.Resource, profiles ...string) []fhir.Issue
}

const validateDefinition = "http://hl7.org/fhir/OperationDefinition/Resource-validate"

func (s *Server) registerValidate() {
	s.RegisterOperation(Operation{
		Name: "validate", Definition: validateDefinition,
		Type: true, Instance: true, Idempotent: true,
		Handler: s.validateOp,
	})
}

// validateOp answers [type]/$validate and [type]/[id]/$validate. The body
// is the resource itself or a Parameters with resource, mode and profile.
// The answer is 200 with an OperationOutcome listing every issue ("All OK"
// when there is none); the caller reads the severities.
func (s *Server) validateOp(c *gin.Context, typ, id string) {
	if _, err := s.authorize(c, "operation", "validate", typ); err != nil {
		s.fail(c, err)
		return
	}
	mode := c.Query("mode")
	profile := c.Query("profile")
	var res *fhir.Resource
	if c.Request.Method == http.MethodPost {
		body, err := s.readBodyJSON(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		r, err := fhir.Parse(body)
		if err != nil {
			s.fail(c, err)
			return
		}
		if r.Type == "Parameters" && typ != "Parameters" {
			res, mode, profile, err = validateParams(r.Root(), mode, profile)
			if err != nil {
				s.fail(c, err)
				return
			}
		} else {
			res = r
		}
	}
	switch mode {
	case "", "create", "update", "delete":
	default:
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"mode"}, "mode must be create, update or delete"))
		return
	}
	var issues []fhir.Issue
	switch {
	case mode == "delete":
		if id == "" {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "required", []string{"mode"}, "mode=delete needs an instance: [type]/[id]/$validate"))
			return
		}
		if _, err := s.guard(c).Read(c.Request.Context(), typ, id); err != nil {
			s.failRead(c, nil, err, typ+"/"+id)
			return
		}
	case res == nil:
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "required", []string{"resource"}, "$validate needs a resource (the body, or a Parameters with a resource parameter)"))
		return
	default:
		if res.Type != typ {
			issues = append(issues, fhir.NewIssue("invalid", "the resource is a "+res.Type+" but $validate was called on "+typ, "resourceType"))
		}
		if mode == "update" {
			issues = append(issues, s.checkUpdateMode(c.Request.Context(), res, typ, id)...)
		}
		vi, err := s.runValidator(res, profile)
		if err != nil {
			s.fail(c, err)
			return
		}
		issues = append(issues, vi...)
	}
	if len(issues) == 0 {
		issues = []fhir.Issue{{Severity: fhir.SeverityInformation, Code: "informational", Details: &fhir.IssueDetails{Text: "All OK"}}}
	}
	s.writeJSON(c, http.StatusOK, fhir.NewOutcome(issues...).JSON())
}

// checkUpdateMode: an update needs an id that matches the URL.
func (s *Server) checkUpdateMode(ctx context.Context, res *fhir.Resource, typ, id string) []fhir.Issue {
	switch {
	case res.ID == "":
		return []fhir.Issue{fhir.NewIssue("required", "an update needs the resource's id", typ+".id")}
	case id != "" && res.ID != id:
		return []fhir.Issue{fhir.NewIssue("invalid", "the resource's id does not match the URL", typ+".id")}
	}
	return nil
}

func (s *Server) runValidator(res *fhir.Resource, profile string) ([]fhir.Issue, error) {
	if s.cfg.Validator == nil {
		return nil, fhir.Errorf(http.StatusNotImplemented, "not-supported", nil, "validation is not configured")
	}
	if profile == "" {
		return s.cfg.Validator.Validate(res), nil
	}
	pv, ok := s.cfg.Validator.(ProfileValidator)
	if !ok || !pv.HasProfile(profile) {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", []string{"profile"}, "the server does not hold the profile %s", profile)
	}
	return pv.ValidateAgainst(res, profile), nil
}

// validateParams reads $validate's Parameters form.
func validateParams(p *fjson.Value, mode, profile string) (*fhir.Resource, string, string, error) {
	var res *fhir.Resource
	params := p.Get("parameter")
	if params != nil && params.Kind != fjson.Array {
		return nil, "", "", fhir.Errorf(http.StatusBadRequest, "structure", []string{"Parameters.parameter"}, "parameter must be an array")
	}
	if params == nil {
		return nil, mode, profile, nil
	}
	for i, pv := range params.Items {
		switch pv.Get("name").String() {
		case "resource":
			rv := pv.Get("resource")
			if rv == nil {
				return nil, "", "", fhir.Errorf(http.StatusBadRequest, "required", []string{"Parameters.parameter[" + itoa(i) + "].resource"}, "the resource parameter carries no resource")
			}
			r, err := fhir.FromValue(rv)
			if err != nil {
				return nil, "", "", prefixExpr(err, "Parameters.parameter["+itoa(i)+"].resource")
			}
			res = r
		case "mode":
			mode = pv.Get("valueCode").String()
		case "profile":
			if v := pv.Get("valueUri").String(); v != "" {
				profile = v
			} else {
				profile = pv.Get("valueCanonical").String()
			}
		}
	}
	return res, mode, profile, nil
}
