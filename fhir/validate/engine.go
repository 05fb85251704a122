package validate

import (
	"fmt"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// The invariants are evaluated with the gateway's FHIRPath engine.
func init() { engine = fhirpathEngine{} }

type fhirpathEngine struct{}

func (fhirpathEngine) compile(expr string) (invariantExpr, error) {
	e, err := fhirpath.Compile(expr)
	if err != nil {
		return nil, err
	}
	return fhirpathExpr{e}, nil
}

type fhirpathExpr struct{ e *fhirpath.Expr }

func (x fhirpathExpr) evalBool(node *fjson.Value, typeName string, resource, root *fjson.Value) (value, nonEmpty bool, err error) {
	// An engine defect on some input must not take the validator down: it
	// counts as "cannot evaluate".
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fhirpath panic: %v", r)
		}
	}()
	return x.e.EvalBool(node, typeName, &fhirpath.Env{Resource: resource, RootResource: root})
}
