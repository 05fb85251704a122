package referral

import (
	"context"
	"net/http"
	"slices"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

// taskImmutable are the elements of a referral Task no update may change:
// they say what was asked, of whom, by whom.
var taskImmutable = []string{"groupIdentifier", "intent", "code", "focus", "for", "owner", "requester", "authoredOn", "input"}

// PartyOf says which side of a referral Task the principal is on (nil:
// a gateway without authentication, which acts for both).
func PartyOf(p *auth.Principal, task *fhir.Resource) Party {
	if p == nil || p.Kind == auth.KindSystem || p.Kind == auth.KindAnonymous {
		return Custodian
	}
	root := task.Root()
	owner := root.Get("owner").Get("reference").String()
	requester := root.Get("requester").Get("reference").String()
	subject := root.Get("for").Get("reference").String()
	var party Party
	switch p.Kind {
	case auth.KindProvider:
		actors := p.Actors()
		if owner != "" && slices.Contains(actors, owner) {
			party |= Owner
		}
		if requester != "" && slices.Contains(actors, requester) {
			party |= Requester
		}
	case auth.KindPatient:
		if p.Patient == subject || p.Patient == requester {
			party |= Requester
		}
	}
	return party
}

// BusinessStatusOf is the Task's BSeR businessStatus code ("" when none).
func BusinessStatusOf(task *fhir.Resource) string {
	for _, c := range task.Root().Get("businessStatus").Get("coding").Elems() {
		if c.Get("system").String() == BusinessStatusSystem {
			return c.Get("code").String()
		}
	}
	return ""
}

// conflict is the 409 every illegal Task change answers.
func conflict(expr, format string, args ...any) error {
	return fhir.Errorf(http.StatusConflict, "business-rule", []string{expr}, format, args...)
}

// taskChange enforces the referral Task workflow on a change from cur (nil:
// a creation) to next (see StateMachine) and returns the version to
// store: with the BSeR businessStatus that matches the new status (a
// client that changed only the status gets it set) and lastModified when
// the status moved. Violations answer 409; a party that is neither owner
// nor requester 403.
func (s *Service) taskChange(ctx context.Context, tx storage.Tx, p *auth.Principal, cur, next *fhir.Resource) (*fhir.Resource, error) {
	if !IsTask(cur) {
		if p != nil && p.Kind != auth.KindSystem && p.Kind != auth.KindAnonymous {
			return nil, conflict("Task.groupIdentifier", "referral Tasks are created by Patient/[id]/$second-opinion")
		}
		return next, nil
	}
	if next == nil || next.Type != "Task" {
		return nil, conflict("Task", "a referral Task stays a Task")
	}
	or, nr := cur.Root(), next.Root()
	for _, k := range taskImmutable {
		a, b := or.Get(k), nr.Get(k)
		if (a == nil) != (b == nil) || a != nil && !fjson.Equal(a, b) {
			return nil, conflict("Task."+k, "Task.%s of a referral Task cannot change", k)
		}
	}
	party := PartyOf(p, cur)
	if party == 0 {
		return nil, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "only the owner or the requester of a referral Task may change it")
	}
	from, to := or.Get("status").String(), nr.Get("status").String()
	if err := CheckTransition(from, to, party); err != nil {
		return nil, conflict("Task.status", "%s", err.Error())
	}
	sent, prev := BusinessStatusOf(next), BusinessStatusOf(cur)
	if nr.Get("businessStatus") != nil && sent == "" && !fjson.Equal(nr.Get("businessStatus"), or.Get("businessStatus")) {
		return nil, conflict("Task.businessStatus", "a referral Task's businessStatus is a code of %s", BusinessStatusSystem)
	}
	code, err := ResolveBusinessStatus(to, sent, prev)
	if err != nil {
		return nil, conflict("Task.businessStatus", "%s", err.Error())
	}
	opinions, err := s.taskOpinions(ctx, tx, next)
	if err != nil {
		return nil, err
	}
	if to == "completed" && !slices.ContainsFunc(opinions, (*Opinion).Final) {
		return nil, conflict("Task.output", "a completed referral Task points at its final opinion in output: a document Bundle whose Composition follows %s (see Task/[id]/$opinion)", s.profileURL())
	}
	if to == "in-progress" && (sent == "" || sent == prev) && newInterim(cur, opinions) {
		// an interim report joined the output: BSeR 5.1.4
		code = "5.1.4"
	}
	set := map[string]any{}
	if code != "" && (code != sent || nr.Get("businessStatus") == nil) {
		set["businessStatus"] = concept(BusinessStatusSystem, code, BusinessStatusDisplay[code])
	}
	if from != to {
		set["lastModified"] = fhir.FormatInstant(s.cfg.Now())
	}
	if len(set) == 0 {
		return next, nil
	}
	return withMembers(next, set)
}

// newInterim reports whether opinions hold an interim report (a
// preliminary opinion) that cur's output did not name.
func newInterim(cur *fhir.Resource, opinions []*Opinion) bool {
	had := map[string]bool{}
	for _, o := range cur.Root().Get("output").Elems() {
		had[localRef(o.Get("valueReference").Get("reference").String())] = true
	}
	for _, o := range opinions {
		if !o.Final() && !had["Bundle/"+o.Bundle.ID] {
			return true
		}
	}
	return false
}
