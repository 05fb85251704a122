package release

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

// Resources of the second-opinion workflow that belong to one referral
// Task (one carrying the RequisitionSystem groupIdentifier) are released
// to a provider by that Task, not by the patient's Consents on data:
//
//   - an opinion document (a document Bundle whose Composition names the
//     Task in event.detail) is the specialist's own writing: it is given
//     to the provider the Task addresses (its owner) and to its requester,
//     while the patient shares their record with it, and to no other
//     provider, whatever the Consents say of the data it holds. Two
//     specialists asked for independent opinions do not see each other's
//     (the patient hands one on with a SMART Health Link);
//   - a follow-up message (a Communication whose partOf or basedOn names
//     the Task) is given to the Task's parties that sent or receive it,
//     while the patient shares their record with them: a message the
//     gateway writes to the patient alone is not the specialist's.
//
// What a message points at (a result uploaded in answer) is decided on
// its own, by the Consents.

// workflowTask returns the referral Task r belongs to (nil when r is not
// a workflow resource, or its Task is not a referral Task). A reference
// to a Task that cannot be read makes r tied to nothing that releases it:
// missing is then true.
func (g *Guard) workflowTask(ctx context.Context, r *fhir.Resource) (task *fhir.Resource, missing bool, err error) {
	var refs []string
	root := r.Root()
	switch r.Type {
	case "Communication":
		for _, f := range []string{"partOf", "basedOn"} {
			for _, ref := range items(root.Get(f)) {
				refs = append(refs, ref.Get("reference").String())
			}
		}
	case "Bundle":
		if root.Get("type").String() != "document" {
			return nil, false, nil
		}
		first := items(root.Get("entry"))
		if len(first) == 0 {
			return nil, false, nil
		}
		comp := first[0].Get("resource")
		if comp.Get("resourceType").String() != "Composition" {
			return nil, false, nil
		}
		for _, ev := range items(comp.Get("event")) {
			for _, d := range items(ev.Get("detail")) {
				refs = append(refs, d.Get("reference").String())
			}
		}
	default:
		return nil, false, nil
	}
	for _, raw := range refs {
		ref := g.d.local(raw)
		id, ok := strings.CutPrefix(ref, "Task/")
		if !ok {
			continue
		}
		t, err := g.readStub(ctx, "Task", id)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
				missing = true
				continue
			}
			return nil, false, err
		}
		if t.Root().Get("groupIdentifier").Get("system").String() == RequisitionSystem {
			return t, false, nil
		}
	}
	return nil, missing, nil
}

// workflowReleased decides a workflow resource for a provider; decided is
// false when r is not one (the other rules decide it).
func (g *Guard) workflowReleased(ctx context.Context, r *fhir.Resource) (ok, decided bool, err error) {
	task, missing, err := g.workflowTask(ctx, r)
	if err != nil {
		return false, true, err
	}
	if task == nil {
		// a message or document naming a Task that is gone protects what
		// it held: nothing releases it
		return false, missing, nil
	}
	if !referralParty(task, g.p) {
		return false, true, nil
	}
	if r.Type == "Communication" && !g.messageParty(r) {
		return false, true, nil
	}
	pats := g.d.patientsOf(task)
	if len(pats) == 0 {
		return false, true, nil
	}
	ok, err = g.relationship(ctx, g.request(), pats)
	return ok, true, err
}

// messageParty reports whether the provider sent or receives a message.
func (g *Guard) messageParty(r *fhir.Resource) bool {
	actors := g.p.Actors()
	root := r.Root()
	refs := []*fjson.Value{root.Get("sender")}
	refs = append(refs, items(root.Get("recipient"))...)
	for _, ref := range refs {
		if ref != nil && slices.Contains(actors, g.d.local(ref.Get("reference").String())) {
			return true
		}
	}
	return false
}
