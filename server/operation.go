package server

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// Operation is a FHIR operation ($name) the server answers. Registered
// operations appear in the route table and the CapabilityStatement.
type Operation struct {
	// Name without the "$".
	Name string
	// Definition is the canonical of the standard OperationDefinition the
	// operation implements ("" for the gateway's own); the gateway's
	// definition, published under its canonical base, names it as its base.
	Definition string
	// Def describes the operation for its published OperationDefinition;
	// the built-in description of the operation's name when empty.
	Def OpDef
	// Levels the operation is invoked at.
	System, Type, Instance bool
	// Types restricts type and instance levels to these resource types
	// (nil: every type).
	Types []string
	// Idempotent operations (affectsState false) may be invoked with GET.
	Idempotent bool
	// Handler answers the call. typ and id are empty at the levels that do
	// not have them.
	Handler func(c *gin.Context, typ, id string)
}

// RegisterOperation adds an operation; call before serving.
func (s *Server) RegisterOperation(op Operation) {
	if op.Def.ID == "" {
		op.Def = builtinDefs[op.Name]
		if op.Def.ID == "" {
			panic("server: operation $" + op.Name + " has no definition")
		}
	}
	if op.Def.Base == "" {
		op.Def.Base = op.Definition
	}
	s.operations = append(s.operations, op)
	methods := []string{http.MethodPost}
	if op.Idempotent {
		methods = append(methods, http.MethodGet)
	}
	types := op.Types
	if types == nil {
		types = []string{":type"}
	}
	for _, m := range methods {
		if op.System {
			s.routes = append(s.routes, Route{Method: m, Path: "/$" + op.Name, Name: "operation:" + op.Name})
		}
		for _, t := range types {
			if op.Type {
				s.routes = append(s.routes, Route{Method: m, Path: "/" + t + "/$" + op.Name, Name: "operation:" + op.Name})
			}
			if op.Instance {
				s.routes = append(s.routes, Route{Method: m, Path: "/" + t + "/:id/$" + op.Name, Name: "operation:" + op.Name})
			}
		}
	}
}

func (s *Server) findOperation(name string, level string, typ, method string) (*Operation, error) {
	name = strings.TrimPrefix(name, "$")
	for i := range s.operations {
		op := &s.operations[i]
		if op.Name != name {
			continue
		}
		ok := (level == "system" && op.System) || (level == "type" && op.Type) || (level == "instance" && op.Instance)
		if ok && typ != "" && op.Types != nil && !slices.Contains(op.Types, typ) {
			ok = false
		}
		if !ok {
			return nil, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "operation $%s is not supported at this level", name)
		}
		if method == http.MethodGet && !op.Idempotent {
			return nil, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", nil, "operation $%s changes state and must be invoked with POST", name)
		}
		return op, nil
	}
	return nil, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "operation $%s is not supported", name)
}

// typeOperation answers [type]/$op (GET or POST).
func (s *Server) typeOperation(c *gin.Context) {
	typ, err := pathType(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	op, err := s.findOperation(c.Param("id"), "type", typ, c.Request.Method)
	if err != nil {
		s.fail(c, err)
		return
	}
	op.Handler(c, typ, "")
}

// postTypeOrOperation answers POST [type]/[x]: only operations and
// _search live there.
func (s *Server) postTypeOrOperation(c *gin.Context) {
	if c.Param("id") == "_search" {
		s.searchPost(c)
		return
	}
	if strings.HasPrefix(c.Param("id"), "$") {
		s.typeOperation(c)
		return
	}
	s.fail(c, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", nil, "POST is not allowed on a resource instance; use PUT to update"))
}

// instanceOperation answers [type]/[id]/$op, and hands [type]/[id]/[type2]
// to compartment search.
func (s *Server) instanceOperation(c *gin.Context) {
	name := c.Param("op")
	if !strings.HasPrefix(name, "$") {
		if c.Request.Method == http.MethodGet {
			s.compartmentSearch(c)
			return
		}
		s.fail(c, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", nil, "method %s is not allowed at this path", c.Request.Method))
		return
	}
	typ, id, err := pathTypeID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	op, err := s.findOperation(name, "instance", typ, c.Request.Method)
	if err != nil {
		s.fail(c, err)
		return
	}
	op.Handler(c, typ, id)
}

// systemOperation answers [base]/$op.
func (s *Server) systemOperation(c *gin.Context) {
	name := c.Param("type")
	op, err := s.findOperation(name, "system", "", c.Request.Method)
	if err != nil {
		s.fail(c, err)
		return
	}
	op.Handler(c, "", "")
}

func isGone(err error) bool { return errors.Is(err, storage.ErrGone) }
