package server

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// conditionalMatches returns the current resources of typ that match a
// conditional URL's search (If-None-Exist, conditional update/patch/delete).
// Inside a transaction it first locks the condition (see conditionLocks),
// so that the search and the write that follows it happen once at a time
// for that condition across every replica.
func (s *Server) conditionalMatches(ctx context.Context, r storage.Reader, typ, query string, entry int, field string) ([]*fhir.Resource, error) {
	if query == "" {
		return nil, fhir.Errorf(http.StatusBadRequest, "required", nil, "a conditional request needs search parameters")
	}
	if tx, ok := r.(storage.Tx); ok {
		if err := tx.Lock(ctx, conditionLocks(typ, query)...); err != nil {
			return nil, err
		}
	}
	return s.searchAll(ctx, r, typ, query, 2)
}

// conditionLocks names the locks a conditional write on typ takes before
// its search: one per parameter and value of the condition (modifiers and
// prefixes kept out, each of a comma's alternatives on its own). Two
// conditions that could be satisfied by one new resource almost always
// share a parameter and value (the identifier), so they serialise even
// when written differently ("identifier=a|1" and
// "identifier=a|1&active=true"); conditions that share none cannot race
// into a duplicate of each other's match by the same value. Parameters
// that describe the result rather than the resource (_count, _sort...)
// are left out.
func conditionLocks(typ, query string) []string {
	q, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
	if err != nil {
		return []string{"condition:" + typ + "?" + query}
	}
	var keys []string
	for name, vals := range q {
		name, _, _ = strings.Cut(name, ":")
		switch name {
		case "_count", "_sort", "_summary", "_elements", "_total", "_include", "_revinclude", "_format", "_pretty", "_contained", "_containedType":
			continue
		}
		for _, v := range vals {
			for _, alt := range search.SplitEscaped(v, ',') {
				keys = append(keys, "condition:"+typ+"?"+name+"="+alt)
			}
		}
	}
	if len(keys) == 0 {
		keys = append(keys, "condition:"+typ)
	}
	return keys
}

// conditionalMatch is conditionalMatches for operations that need at most
// one match: more than one answers 412.
func (s *Server) conditionalMatch(ctx context.Context, r storage.Reader, typ, query string, entry int, field string) (*fhir.Resource, error) {
	ms, err := s.conditionalMatches(ctx, r, typ, query, entry, field)
	if err != nil {
		return nil, err
	}
	switch len(ms) {
	case 0:
		return nil, nil
	case 1:
		return ms[0], nil
	}
	return nil, fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", nil, "the condition matches more than one %s", typ)
}

func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// conditionalUpdate answers PUT [type]?[search]: no match creates (with
// the body's id or a new one), one match updates it, several answer 412.
func (s *Server) conditionalUpdate(c *gin.Context) {
	typ, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	res, err := s.readResource(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if res.Type != typ {
		s.fail(c, fhir.Errorf(http.StatusUnprocessableEntity, "invalid", []string{"resourceType"}, "the body is a %s but the URL names a %s", res.Type, typ))
		return
	}
	if err := s.systemOnly(c, "update", typ); err != nil {
		s.fail(c, err)
		return
	}
	if typ == "Task" && referral.IsTask(res) {
		s.fail(c, errConditionalTask)
		return
	}
	if err := s.checkWrite(c, res); err != nil {
		s.fail(c, err)
		return
	}
	var (
		out     *fhir.Resource
		created bool
	)
	err = s.cfg.Store.InTx(c.Request.Context(), func(tx storage.Tx) error {
		match, err := s.conditionalMatch(c.Request.Context(), tx, typ, c.Request.URL.RawQuery, -1, "")
		if err != nil {
			return err
		}
		switch {
		case match != nil:
			if res.ID != "" && res.ID != match.ID {
				return fhir.Errorf(http.StatusUnprocessableEntity, "invalid", []string{typ + ".id"}, "the body's id is not the id of the matching resource")
			}
			res.ID = match.ID
		case res.ID == "":
			res.ID = s.newID()
		}
		if err := s.validateWrite(res, ""); err != nil {
			return err
		}
		out, created, err = tx.Update(c.Request.Context(), res, storage.UpdateOptions{AllowCreate: true, Method: http.MethodPut})
		return err
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.Header("Location", s.location(c, out))
	}
	s.writeResult(c, status, out, "updated "+out.Type+"/"+out.ID)
}

// conditionalDelete answers DELETE [type]?[search]: every match is deleted
// (none is fine).
func (s *Server) conditionalDelete(c *gin.Context) {
	typ, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if c.Request.URL.RawQuery == "" {
		s.fail(c, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", nil, "DELETE on a type needs search parameters (conditional delete)"))
		return
	}
	if err := s.systemOnly(c, "delete", typ); err != nil {
		s.fail(c, err)
		return
	}
	err = s.cfg.Store.InTx(c.Request.Context(), func(tx storage.Tx) error {
		matches, err := s.searchAll(c.Request.Context(), tx, typ, c.Request.URL.RawQuery, maxConditionalDeletes+1)
		if err != nil {
			return err
		}
		if len(matches) > maxConditionalDeletes {
			return fhir.Errorf(http.StatusPreconditionFailed, "too-costly", nil, "the condition matches more than %d resources", maxConditionalDeletes)
		}
		for _, m := range matches {
			if _, err := tx.Delete(c.Request.Context(), typ, m.ID, storage.DeleteOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
}

// maxConditionalDeletes bounds one conditional delete.
const maxConditionalDeletes = 100
