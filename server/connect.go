package server

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"time"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/connect"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/gin-gonic/gin"
)

// ConnectService connects patients' own logins at sources
// (*connect.Service).
type ConnectService interface {
	States(ctx context.Context, patient string) ([]connect.State, error)
	Begin(ctx context.Context, patient, source, returnURL string) (string, error)
	Complete(ctx context.Context, q url.Values) (*connect.Outcome, error)
	// Finish and Disconnect store the patient's tokens (or delete them)
	// in a transaction that carries the request's audit events; the
	// function each is given is called just before, to note what the
	// events say.
	Finish(ctx context.Context, patient, ref string, connecting func(source string)) (*connect.Outcome, error)
	Disconnect(ctx context.Context, patient, source string, disconnecting func()) (bool, error)
}

// RegisterConnect serves Patient/[id]/$connect (list the sources the
// patient connects itself, start a connection, disconnect) and the
// callback the sources send the patient's browser back to
// (connect.CallbackPath, public: the state authenticates it). Call before
// serving.
func (s *Server) RegisterConnect(svc ConnectService) {
	s.connect = svc
	s.RegisterOperation(Operation{
		Name: "connect", Instance: true, Types: []string{"Patient"}, Idempotent: true,
		Def: OpDef{ID: "Patient-connect", Title: "Connect the patient's own login at a source",
			Description: "Some sources are read only with the patient's own login there (SMART standalone launch; the operator lists them). GET lists them with the patient's state at each (not-connected, connected since, reconnect when its tokens stopped working). " +
				"POST with source and returnUrl starts a connection: the answer's authorizeUrl is where the patient's browser goes to log in at the source, which then sends it to the gateway's callback and back to returnUrl (an allowed app address) with connect=<source>&complete=<reference> after a login, or connect=<source>&result=denied|failed. " +
				"POST with source and complete (that reference) finishes the connection; only the patient the connection was started for can finish it (a login at the source never connects another record), within five minutes, once. " +
				"POST with source and disconnect=true forgets the patient's tokens at the source (revoking them there when the source offers revocation). Only the patient itself uses it. Tokens never appear in an answer.",
			Parameters: []OpParam{
				param("source", "in", 0, "1", "string", "The source's id (POST)."),
				param("returnUrl", "in", 0, "1", "uri", "Where the browser returns after the login (POST, to connect): an address of the patient app."),
				param("disconnect", "in", 0, "1", "boolean", "true to disconnect the source (POST)."),
				param("complete", "in", 0, "1", "string", "The reference the callback sent the browser back with, to finish the connection (POST)."),
				{Name: "source", Use: "out", Min: 0, Max: "*", Documentation: "GET: one per connectable source.", Parts: []OpParam{
					param("id", "out", 1, "1", "string", ""), param("title", "out", 1, "1", "string", ""),
					param("status", "out", 1, "1", "code", "not-connected | connected | reconnect"),
					param("since", "out", 0, "1", "dateTime", "When the patient connected."),
				}},
				param("authorizeUrl", "out", 0, "1", "uri", "POST to connect: where to send the patient's browser."),
				param("status", "out", 0, "1", "code", "POST to disconnect: not-connected; POST to complete: connected."),
			}},
		Handler: s.connectOp,
	})
	r := Route{Method: http.MethodGet, Path: connect.CallbackPath, Name: "operation:connect", Public: true, handler: s.connectCallback}
	s.routes = append(s.routes, r)
	s.engine.Handle(r.Method, r.Path, r.handler)
	s.publicPaths[r.Path] = true
}

// connectOp answers Patient/[id]/$connect.
func (s *Server) connectOp(c *gin.Context, _, id string) {
	if _, err := s.authorize(c, "operation", "connect", "Patient"); err != nil {
		s.fail(c, err)
		return
	}
	a := accessOf(c)
	a.resource = "Patient/" + id
	a.patients["Patient/"+id] = true
	if err := s.guard(c).PatientSelf(id, "connects, lists and disconnects its own sources"); err != nil {
		a.refused = "source connections are the patient's own"
		s.fail(c, err)
		return
	}
	if s.connect == nil {
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "no source is connected by patients on this gateway"))
		return
	}
	ctx := c.Request.Context()
	if c.Request.Method == http.MethodGet {
		states, err := s.connect.States(ctx, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		var params []map[string]any
		for _, st := range states {
			parts := []map[string]any{{"name": "id", "valueString": st.Source}, {"name": "title", "valueString": st.Title}, {"name": "status", "valueCode": st.Status}}
			if !st.Since.IsZero() {
				parts = append(parts, map[string]any{"name": "since", "valueDateTime": st.Since.UTC().Format(time.RFC3339)})
			}
			params = append(params, map[string]any{"name": "source", "part": parts})
		}
		s.writeParameters(c, params)
		return
	}
	in, err := s.operationParams(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	for k, v := range c.Request.URL.Query() {
		in[k] = append(in[k], v...)
	}
	source := in.Get("source")
	if source == "" {
		s.fail(c, badParam("source", "source is required"))
		return
	}
	if d := in.Get("disconnect"); d != "" && d != "false" {
		_, err := s.connect.Disconnect(ctx, id, source, func() { a.Note("disconnected source " + source) })
		if err != nil {
			a.refused = "disconnecting source " + source + " failed"
			s.failConnect(c, err)
			return
		}
		s.writeParameters(c, []map[string]any{{"name": "status", "valueCode": "not-connected"}})
		return
	}
	if ref := in.Get("complete"); ref != "" {
		// the note is made inside Finish, before the tokens are stored:
		// the event committed with them says what happened
		_, err := s.connect.Finish(ctx, id, ref, func(src string) { a.Note("connected source " + src + " (the patient's login there)") })
		switch {
		case errors.Is(err, connect.ErrBadState):
			a.refused = "completing a source connection: unknown, used or expired reference"
			s.fail(c, badParam("complete", "%s", err.Error()))
			return
		case errors.Is(err, connect.ErrOtherPatient):
			// a login at the source started for another record (the
			// forged-login attack): nothing stored, the reference used up
			a.refused = "completing a source connection started for another patient's record"
			s.fail(c, fhir.Errorf(http.StatusForbidden, "forbidden", []string{"Parameters.parameter.where(name='complete')"}, "%s", err.Error()))
			return
		case err != nil:
			a.refused = "connecting source " + source + " failed"
			s.failConnect(c, err)
			return
		}
		s.writeParameters(c, []map[string]any{{"name": "status", "valueCode": "connected"}})
		return
	}
	u, err := s.connect.Begin(ctx, id, source, in.Get("returnUrl"))
	if err != nil {
		s.failConnect(c, err)
		return
	}
	a.Note("started connecting source " + source)
	s.writeParameters(c, []map[string]any{{"name": "authorizeUrl", "valueUri": u}})
}

func (s *Server) failConnect(c *gin.Context, err error) {
	switch {
	case errors.Is(err, connect.ErrUnknownSource):
		err = badParam("source", "%s", err.Error())
	case errors.Is(err, connect.ErrReturnURL):
		err = badParam("returnUrl", "%s", err.Error())
	case errors.Is(err, connect.ErrDisabled):
		err = fhir.Errorf(http.StatusNotImplemented, "not-supported", nil, "%s", err.Error())
	case errors.Is(err, connect.ErrSource), errors.Is(err, adapters.ErrUnavailable):
		err = fhir.Errorf(http.StatusBadGateway, "transient", nil, "%s", err.Error())
	}
	s.fail(c, err)
}

// writeParameters answers a Parameters resource.
func (s *Server) writeParameters(c *gin.Context, params []map[string]any) {
	body, err := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, body)
}

// connectCallback answers the source's redirect (GET
// /connect/callback?code&state, or ?error&state): it completes the
// connection and sends the browser back to the app. An unknown, used,
// expired or forged state gets a 400 page and nothing is stored.
func (s *Server) connectCallback(c *gin.Context) {
	a := accessOf(c)
	a.interaction, a.operation = "operation", "connect"
	if s.connect == nil {
		s.connectPage(c, http.StatusNotFound, "No source is connected by patients on this gateway.")
		return
	}
	out, err := s.connect.Complete(c.Request.Context(), c.Request.URL.Query())
	if out == nil {
		if errors.Is(err, connect.ErrBadState) || errors.Is(err, connect.ErrDisabled) {
			a.refused = "connect callback refused: " + err.Error()
			s.connectPage(c, http.StatusBadRequest, err.Error())
			return
		}
		s.log.ErrorContext(c.Request.Context(), "connect callback failed", "err", err)
		a.refused = "connect callback failed"
		s.connectPage(c, http.StatusInternalServerError, "The connection could not be completed. Go back to the app and try again.")
		return
	}
	a.resource = "Patient/" + out.Patient
	a.patients["Patient/"+out.Patient] = true
	result := ""
	switch {
	case err != nil:
		// the source's login failed after the state checked out: the
		// cause (no token in it) goes to the log, the app says "failed"
		s.log.WarnContext(c.Request.Context(), "connecting a source failed", "source", out.Source, "err", err)
		result = "failed"
		a.refused = "connecting source " + out.Source + " failed"
	case out.Denied != "":
		result = "denied"
		a.Note("connecting source " + out.Source + " was cancelled at the source")
	default:
		a.Note("signed in at source " + out.Source + "; the app completes the connection")
	}
	back, perr := url.Parse(out.ReturnURL)
	if perr != nil {
		s.connectPage(c, http.StatusBadRequest, "The app's address is invalid.")
		return
	}
	q := back.Query()
	q.Set("connect", out.Source)
	if result != "" {
		q.Set("result", result)
	} else {
		q.Set("complete", out.Complete)
	}
	back.RawQuery = q.Encode()
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "no-referrer")
	c.Redirect(http.StatusSeeOther, back.String())
}

// connectPage is the callback's answer when there is no app to go back
// to: a page without script.
func (s *Server) connectPage(c *gin.Context, status int, msg string) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Header("Content-Security-Policy", "default-src 'none'")
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "no-referrer")
	c.Status(status)
	_, _ = c.Writer.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Connecting a source</title></head><body><main><h1>Connecting a source</h1><p>` +
		html.EscapeString(msg) + `</p></main></body></html>`)
}
