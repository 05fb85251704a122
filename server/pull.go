package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/auth"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/jobs"
	"github.com/gin-gonic/gin"
)

// PullService starts pulls of a patient's record from sources and reports
// on them (*jobs.Service).
type PullService interface {
	// Enqueue starts a pull from sources (all when empty) and returns its
	// id; jobs.ErrPatientNotFound and jobs.ErrUnknownSource say why not.
	Enqueue(ctx context.Context, patientID string, sources []string) (string, error)
	// Status reports on a pull; jobs.ErrUnknownPull when there is none.
	Status(ctx context.Context, pullID string) (*jobs.Status, error)
}

// pullStatusPath is where a pull's status is polled (FHIR asynchronous
// request pattern).
const pullStatusPath = "/_pull/"

func (s *Server) registerPull() {
	s.RegisterOperation(Operation{
		Name:     "pull",
		Instance: true, Types: []string{"Patient"},
		Handler: s.pull,
	})
	r := Route{Method: http.MethodGet, Path: pullStatusPath + ":pull", Name: "operation:pull", handler: s.pullStatus}
	s.routes = append(s.routes, r)
	s.engine.Handle(r.Method, r.Path, r.handler)
}

// pull answers POST Patient/[id]/$pull: 202 Accepted with the status URL
// in Content-Location.
func (s *Server) pull(c *gin.Context, typ, id string) {
	if _, err := s.authorize(c, "operation", "pull", "Patient"); err != nil {
		s.fail(c, err)
		return
	}
	if p := principal(c); p != nil && p.Kind == auth.KindPatient && patientID(p) != id {
		accessOf(c).refused = "another patient's record"
		s.fail(c, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only pull its own record"))
		return
	}
	accessOf(c).resource = "Patient/" + id
	params := c.Request.URL.Query()
	if p, err := s.operationParams(c); err != nil {
		s.fail(c, err)
		return
	} else {
		for k, v := range p {
			params[k] = append(params[k], v...)
		}
	}
	var sources []string
	for _, v := range params["source"] {
		for _, src := range strings.Split(v, ",") {
			if src = strings.TrimSpace(src); src != "" {
				sources = append(sources, src)
			}
		}
	}
	pullID, err := s.cfg.Pull.Enqueue(c.Request.Context(), id, sources)
	switch {
	case errors.Is(err, jobs.ErrPatientNotFound):
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-found", nil, "Patient/%s is not known", id))
		return
	case errors.Is(err, adapters.ErrNotConnected):
		s.fail(c, fhir.Errorf(http.StatusConflict, "business-rule", []string{"source"}, "%s", err.Error()))
		return
	case errors.Is(err, jobs.ErrUnknownSource):
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"source"}, "%s", err.Error()))
		return
	case err != nil:
		s.fail(c, err)
		return
	}
	// the request itself is in the patient's trail (what the pull then
	// files is recorded by its jobs)
	a := accessOf(c)
	a.patients["Patient/"+id] = true
	if len(sources) > 0 {
		a.Note("pull requested from " + strings.Join(sources, ", "))
	} else {
		a.Note("pull requested from every source")
	}
	c.Header("Content-Location", s.baseURL(c.Request)+pullStatusPath+pullID)
	out := s.outcome(c, fhir.Issue{Severity: "information", Code: "informational", Details: &fhir.IssueDetails{Text: "pull " + pullID + " accepted; poll the Content-Location for its report"}})
	s.writeJSON(c, http.StatusAccepted, out.JSON())
}

// pullStatus answers GET /_pull/[id]: 202 with X-Progress while the pull
// runs, then 200 with the report (per source: state, counts, errors,
// validation issues).
func (s *Server) pullStatus(c *gin.Context) {
	if _, err := s.authorize(c, "operation", "pull", "Patient"); err != nil {
		s.fail(c, err)
		return
	}
	st, err := s.cfg.Pull.Status(c.Request.Context(), c.Param("pull"))
	if errors.Is(err, jobs.ErrUnknownPull) {
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-found", nil, "no pull has this id"))
		return
	} else if err != nil {
		s.fail(c, err)
		return
	}
	accessOf(c).resource = "Patient/" + st.Patient
	if p := principal(c); p != nil && p.Kind == auth.KindPatient && patientID(p) != st.Patient {
		accessOf(c).refused = "another patient's record"
		s.fail(c, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "a patient token may only follow its own pulls"))
		return
	}
	c.Header("X-Progress", st.Progress)
	if !st.Done {
		c.Header("Retry-After", "1")
		c.Status(http.StatusAccepted)
		return
	}
	body, err := json.Marshal(st)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Content-Type", "application/json")
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(body)
}
