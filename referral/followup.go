package referral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/auth"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
)

// Follow-up: questions and answers between the patient and the specialist
// are Communications tied to the referral Task (partOf or basedOn names
// it), written with plain FHIR (POST Communication, in a transaction or
// not). The workflow (Store) checks each one and acts on it in the same
// transaction:
//
//   - only the Task's parties write them (the owner, the patient or the
//     requester, a system client for either), while the Task is open; the
//     subject is the Task's patient, the sender the writer, the recipients
//     parties of the Task; inResponseTo names messages of the same Task;
//   - the specialist's message that answers nothing (no inResponseTo) is
//     a question: an accepted or in-progress Task goes on-hold, waiting for
//     the patient; the patient's message resumes an on-hold Task
//     (in-progress);
//   - what the patient's message points at (payload.contentReference, or
//     an attachment's url naming a resource: a result, a DocumentReference
//     of an uploaded file) joins the recipient's package only when the
//     release rule gives it to that recipient now (the patient's Consent);
//     the gateway tells the patient in a message of its own what was shared
//     and what was not. A patient's message carries no file of its own
//     (attachment data): files are uploaded into the record first
//     (Patient/$import) so that the Consent decides who gets them.

// SectionFollowUp codes the package section that holds the results the
// patient sent in answer to the specialist.
const SectionFollowUp = "follow-up"

// communicationCategory is FHIR's communication-category.
const communicationCategory = "http://terminology.hl7.org/CodeSystem/communication-category"

// messageTask returns the referral Task a Communication is tied to (read
// through r), nil when it is tied to none.
func messageTask(ctx context.Context, r storage.Reader, c *fhir.Resource) (*fhir.Resource, error) {
	if c == nil || c.Type != "Communication" {
		return nil, nil
	}
	root := c.Root()
	for _, f := range []string{"partOf", "basedOn"} {
		for _, ref := range root.Get(f).Elems() {
			id, ok := strings.CutPrefix(localRef(ref.Get("reference").String()), "Task/")
			if !ok {
				continue
			}
			t, err := r.Read(ctx, "Task", id)
			if err != nil {
				if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
					continue
				}
				return nil, err
			}
			if IsTask(t) {
				return t, nil
			}
		}
	}
	return nil, nil
}

func msgErr(expr, format string, args ...any) error {
	return fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", []string{"Communication." + expr}, format, args...)
}

// taskParties are the references a message of the Task may name as sender
// or recipient.
func taskParties(task *fhir.Resource) []string {
	root := task.Root()
	var out []string
	for _, f := range []string{"for", "owner", "requester"} {
		if ref := localRef(root.Get(f).Get("reference").String()); ref != "" && !slices.Contains(out, ref) {
			out = append(out, ref)
		}
	}
	return out
}

// messageWrite checks a write of a follow-up message (see above).
func (s *Service) messageWrite(ctx context.Context, tx storage.Reader, p *auth.Principal, cur, next *fhir.Resource) (*fhir.Resource, error) {
	system := p == nil || p.Kind == auth.KindSystem || p.Kind == auth.KindAnonymous
	if cur != nil {
		task, err := messageTask(ctx, tx, cur)
		if err != nil {
			return nil, err
		}
		if task != nil && !system {
			if next == nil {
				return nil, conflict("Communication", "a follow-up message is part of the request's record: it is not deleted")
			}
			if nt, err := messageTask(ctx, tx, next); err != nil || nt == nil || nt.ID != task.ID {
				return nil, conflict("Communication.partOf", "a follow-up message stays a message of Task/%s", task.ID)
			}
			if localRef(cur.Root().Get("sender").Get("reference").String()) != localRef(next.Root().Get("sender").Get("reference").String()) {
				return nil, conflict("Communication.sender", "a message keeps its sender")
			}
		}
	}
	if next == nil {
		return nil, nil
	}
	task, err := messageTask(ctx, tx, next)
	if err != nil || task == nil {
		return next, err
	}
	troot, root := task.Root(), next.Root()
	party := PartyOf(p, task)
	if party == 0 {
		return nil, fhir.Errorf(http.StatusForbidden, "forbidden", nil, "only the parties of Task/%s (the specialist asked, the patient, the requester) write its messages", task.ID)
	}
	if st := troot.Get("status").String(); Terminal(st) && cur == nil {
		return nil, conflict("Communication.partOf", "Task/%s is %s: its conversation is over", task.ID, st)
	}
	patient := localRef(troot.Get("for").Get("reference").String())
	if localRef(root.Get("subject").Get("reference").String()) != patient {
		return nil, msgErr("subject", "a message of Task/%s is about its patient (%s)", task.ID, patient)
	}
	parties := taskParties(task)
	sender := localRef(root.Get("sender").Get("reference").String())
	switch {
	case sender == "":
		return nil, msgErr("sender", "a message names its sender")
	case system:
		if !slices.Contains(parties, sender) {
			return nil, msgErr("sender", "the sender of a message of Task/%s is one of its parties (%s)", task.ID, strings.Join(parties, ", "))
		}
	case p.Kind == auth.KindPatient:
		if sender != p.Patient {
			return nil, msgErr("sender", "a patient's message is sent by %s", p.Patient)
		}
	default:
		if !slices.Contains(p.Actors(), sender) {
			return nil, msgErr("sender", "the sender is this token's organization or practitioner (%s)", strings.Join(p.Actors(), ", "))
		}
	}
	recipients := root.Get("recipient").Elems()
	if len(recipients) == 0 {
		return nil, msgErr("recipient", "a message names its recipients")
	}
	for i, rc := range recipients {
		if ref := localRef(rc.Get("reference").String()); !slices.Contains(parties, ref) {
			return nil, msgErr(fmt.Sprintf("recipient[%d]", i), "the recipients of a message of Task/%s are its parties (%s)", task.ID, strings.Join(parties, ", "))
		}
	}
	fromPatientSide := sender != localRef(troot.Get("owner").Get("reference").String())
	for i, pl := range root.Get("payload").Elems() {
		path := fmt.Sprintf("payload[%d]", i)
		ref := localRef(pl.Get("contentReference").Get("reference").String())
		if att := pl.Get("contentAttachment"); att != nil {
			if fromPatientSide && (att.Get("data") != nil || localRef(att.Get("url").String()) == "") {
				return nil, msgErr(path+".contentAttachment", "a patient's message points at its files rather than carrying them: upload the file with Patient/[id]/$import and name its DocumentReference in payload.contentReference, so that the Consent decides who receives it")
			}
			ref = localRef(att.Get("url").String())
		}
		if ref == "" {
			continue // text
		}
		typ, id, _ := strings.Cut(ref, "/")
		res, err := tx.Read(ctx, typ, id)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
				return nil, msgErr(path, "%s does not exist", ref)
			}
			return nil, err
		}
		if pats := s.cfg.Decider.PatientsOf(res); !slices.Contains(pats, strings.TrimPrefix(patient, "Patient/")) || len(pats) != 1 {
			return nil, msgErr(path, "%s is not of %s's record alone", ref, patient)
		}
	}
	for i, r := range root.Get("inResponseTo").Elems() {
		id, ok := strings.CutPrefix(localRef(r.Get("reference").String()), "Communication/")
		prev, err := tx.Read(ctx, "Communication", id)
		if !ok || err != nil {
			return nil, msgErr(fmt.Sprintf("inResponseTo[%d]", i), "inResponseTo names a message of Task/%s", task.ID)
		}
		if pt, err := messageTask(ctx, tx, prev); err != nil || pt == nil || pt.ID != task.ID {
			return nil, msgErr(fmt.Sprintf("inResponseTo[%d]", i), "inResponseTo names a message of Task/%s", task.ID)
		}
	}
	return next, nil
}

// messageEffects acts on a new follow-up message: the Task goes on-hold
// on the specialist's question and back in progress on the patient's
// answer; what the patient sent joins the package when the release rule
// gives it to the specialist.
func (s *Service) messageEffects(ctx context.Context, tx storage.Tx, msg *fhir.Resource) error {
	task, err := messageTask(ctx, tx, msg)
	if err != nil || task == nil {
		return err
	}
	troot, root := task.Root(), msg.Root()
	owner := localRef(troot.Get("owner").Get("reference").String())
	sender := localRef(root.Get("sender").Get("reference").String())
	status := troot.Get("status").String()
	fromOwner := sender == owner
	question := fromOwner && len(root.Get("inResponseTo").Elems()) == 0
	var move string
	switch {
	case question && (status == "accepted" || status == "in-progress"):
		move = "on-hold" // waiting for the patient
	case !fromOwner && status == "on-hold":
		move = "in-progress" // the patient answered
	}
	if move != "" {
		next, err := withMembers(task, map[string]any{"status": move, "lastModified": fhir.FormatInstant(s.cfg.Now())})
		if err != nil {
			return err
		}
		// the workflow's own step, made in the writer's transaction and
		// checked as its write by the release rule
		if _, _, err := tx.Update(ctx, next, storage.UpdateOptions{IfMatch: task.VersionID}); err != nil {
			return err
		}
	}
	if fromOwner {
		return nil
	}
	return s.shareResults(ctx, tx, task, msg)
}

// shareResults adds to the owner's package what the patient's message
// points at and the release rule gives the owner, and tells the patient
// what was shared and what was not.
func (s *Service) shareResults(ctx context.Context, tx storage.Tx, task, msg *fhir.Resource) error {
	troot := task.Root()
	owner := localRef(troot.Get("owner").Get("reference").String())
	patient := localRef(troot.Get("for").Get("reference").String())
	var refs []string
	for _, pl := range msg.Root().Get("payload").Elems() {
		ref := localRef(pl.Get("contentReference").Get("reference").String())
		if ref == "" {
			ref = localRef(pl.Get("contentAttachment").Get("url").String())
		}
		if ref != "" && !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	rg := s.cfg.Decider.RecordGuard(RecipientPrincipal(owner), nil, strings.TrimPrefix(patient, "Patient/"))
	var shared []*fhir.Resource
	var withheld []string
	for _, ref := range refs {
		typ, id, _ := strings.Cut(ref, "/")
		res, err := tx.Read(ctx, typ, id)
		if err != nil {
			return err
		}
		ok, err := rg.Released(ctx, res)
		if err != nil {
			return err
		}
		if ok {
			shared = append(shared, res)
		} else {
			withheld = append(withheld, ref)
		}
	}
	inputs := taskInputs(task)
	if len(shared) > 0 && len(inputs) > 0 {
		if err := s.addToPackage(ctx, tx, inputs[0], shared); err != nil {
			return err
		}
	}
	// the note is the patient's to read: names, not references
	who := s.partyName(ctx, tx, owner)
	var text []string
	if len(shared) > 0 {
		var names []string
		for _, r := range shared {
			names = append(names, itemName(r))
		}
		text = append(text, fmt.Sprintf("Shared with %s (added to its package): %s.", who, strings.Join(names, ", ")))
	}
	if len(withheld) > 0 {
		var names []string
		for _, ref := range withheld {
			typ, id, _ := strings.Cut(ref, "/")
			if r, err := tx.Read(ctx, typ, id); err == nil {
				names = append(names, itemName(r))
			} else {
				names = append(names, ref)
			}
		}
		text = append(text, fmt.Sprintf("Not shared with %s: %s. Your Consent for %s does not cover it; change the Consent and send it again to share it.", who, strings.Join(names, ", "), who))
	}
	notice := map[string]any{
		"resourceType": "Communication", "id": s.cfg.NewID(), "status": "completed",
		"category":     []any{concept(communicationCategory, "notification", "Notification")},
		"partOf":       []any{reference{Reference: "Task/" + task.ID}},
		"inResponseTo": []any{reference{Reference: "Communication/" + msg.ID}},
		"subject":      reference{Reference: patient},
		"recipient":    []any{reference{Reference: patient}},
		"sent":         fhir.FormatInstant(s.cfg.Now()),
		"payload":      []any{map[string]string{"contentString": strings.Join(text, " ")}},
	}
	n, err := fhir.Parse(mustJSON(notice))
	if err != nil {
		return err
	}
	if err := s.validate(n); err != nil {
		return err
	}
	_, err = tx.Create(ctx, n)
	return err
}

// addToPackage appends resources to a package (a new version of its
// Bundle): entries after the others, a follow-up section of the
// Composition naming them, their security labels among the Bundle's.
func (s *Service) addToPackage(ctx context.Context, tx storage.Tx, pkgRef string, rs []*fhir.Resource) error {
	id, ok := strings.CutPrefix(pkgRef, "Bundle/")
	if !ok {
		return nil
	}
	pkg, err := tx.Read(ctx, "Bundle", id)
	if err != nil {
		return err
	}
	root := pkg.Root()
	entries := root.Get("entry").Elems()
	if len(entries) == 0 || entries[0].Get("resource").Get("resourceType").String() != "Composition" {
		return nil
	}
	base := ""
	have := map[string]bool{}
	for _, e := range entries {
		fu := e.Get("fullUrl").String()
		res := e.Get("resource")
		ref := res.Get("resourceType").String() + "/" + res.Get("id").String()
		if strings.HasSuffix(fu, "/"+ref) {
			have[ref] = true
			if base == "" {
				base = strings.TrimSuffix(fu, "/"+ref)
			}
		}
	}
	var added []*fhir.Resource
	for _, r := range rs {
		if !have[r.Type+"/"+r.ID] {
			added = append(added, r)
		}
	}
	if len(added) == 0 || base == "" {
		return nil
	}
	comp, err := fhir.FromValue(entries[0].Get("resource"))
	if err != nil {
		return err
	}
	var sections []any
	var follow map[string]any
	for _, sec := range comp.Root().Get("section").Elems() {
		if hasCode(sec.Get("code"), CaseSummarySystem, SectionFollowUp) {
			_ = json.Unmarshal(fjson.AppendCompact(nil, sec), &follow)
			continue
		}
		sections = append(sections, rawJSON(sec))
	}
	if follow == nil {
		follow = map[string]any{"title": "Follow-up results", "code": concept(CaseSummarySystem, SectionFollowUp, "Follow-up results")}
	}
	refs, _ := follow["entry"].([]any)
	var items []string
	for _, r := range added {
		refs = append(refs, reference{Reference: r.Type + "/" + r.ID})
		items = append(items, "<li>"+html.EscapeString(r.Type+"/"+r.ID)+"</li>")
	}
	follow["entry"] = refs
	prev := ""
	if t, ok := follow["text"].(map[string]any); ok {
		prev, _ = t["div"].(string)
		prev = strings.TrimSuffix(strings.TrimPrefix(prev, `<div xmlns="http://www.w3.org/1999/xhtml">`), "</div>")
	}
	follow["text"] = narrative(prev + "<p>Sent by the patient in answer to the specialist on " + html.EscapeString(HumanDate(s.cfg.Now().UTC())) + ":</p><ul>" + strings.Join(items, "") + "</ul>")
	sections = append(sections, follow)
	compSet := map[string]any{"section": sections}
	for _, r := range added {
		for _, l := range r.Root().Get("meta").Get("security").Elems() {
			if c := l.Get("code").String(); l.Get("system").String() == confidentiality && confRank[c] > confRank[comp.Root().Get("confidentiality").String()] {
				compSet["confidentiality"] = c
			}
		}
	}
	newComp, err := withMembers(comp, compSet)
	if err != nil {
		return err
	}
	out := []any{map[string]any{"fullUrl": entries[0].Get("fullUrl").String(), "resource": json.RawMessage(newComp.Raw)}}
	for _, e := range entries[1:] {
		out = append(out, rawJSON(e))
	}
	for _, r := range added {
		out = append(out, map[string]any{"fullUrl": base + "/" + r.Type + "/" + r.ID, "resource": json.RawMessage(r.Raw)})
	}
	// the Bundle carries every label of its entries, and the highest
	// confidentiality of them
	var labels []any
	seen := map[string]bool{}
	conf := comp.Root().Get("confidentiality").String()
	addLabel := func(l *fjson.Value) {
		if l.Get("system").String() == confidentiality {
			if c := l.Get("code").String(); confRank[c] > confRank[conf] {
				conf = c
			}
			return
		}
		key := l.Get("system").String() + "|" + l.Get("code").String()
		if !seen[key] {
			seen[key] = true
			labels = append(labels, rawJSON(l))
		}
	}
	for _, l := range root.Get("meta").Get("security").Elems() {
		addLabel(l)
	}
	for _, r := range added {
		for _, l := range r.Root().Get("meta").Get("security").Elems() {
			addLabel(l)
		}
	}
	if conf != "" {
		labels = append(labels, coding{System: confidentiality, Code: conf})
	}
	set := map[string]any{"entry": out}
	if len(labels) > 0 {
		set["meta"] = map[string]any{"security": labels}
	}
	next, err := withMembers(pkg, set)
	if err != nil {
		return err
	}
	_, _, err = tx.Update(ctx, next, storage.UpdateOptions{IfMatch: pkg.VersionID})
	return err
}

// partyName is how the patient knows a party of the Task: an
// Organization's name, a PractitionerRole's organization or practitioner,
// else the reference itself.
func (s *Service) partyName(ctx context.Context, tx storage.Tx, ref string) string {
	typ, id, _ := strings.Cut(ref, "/")
	r, err := tx.Read(ctx, typ, id)
	if err != nil {
		return ref
	}
	root := r.Root()
	switch typ {
	case "Organization":
		if n := root.Get("name").String(); n != "" {
			return n
		}
	case "PractitionerRole":
		for _, k := range []string{"organization", "practitioner"} {
			if d := root.Get(k).Get("display").String(); d != "" {
				return d
			}
			if o := localRef(root.Get(k).Get("reference").String()); o != "" && o != ref {
				if n := s.partyName(ctx, tx, o); n != o {
					return n
				}
			}
		}
	case "Practitioner":
		if n := patientName(root); n != "" {
			return n
		}
	}
	return ref
}

// itemName is how the patient knows an item of its record: a document's
// title, a result's or diagnosis's name, else its reference.
func itemName(r *fhir.Resource) string {
	root := r.Root()
	if r.Type == "DocumentReference" {
		if d := root.Get("description").String(); d != "" {
			return d
		}
		for _, c := range root.Get("content").Elems() {
			if t := c.Get("attachment").Get("title").String(); t != "" {
				return t
			}
		}
		if l := conceptLabel(root.Get("type")); l != "" {
			return l
		}
	}
	for _, k := range []string{"code", "medicationCodeableConcept", "vaccineCode", "type"} {
		if l := conceptLabel(root.Get(k)); l != "" {
			return l
		}
	}
	return r.Type + "/" + r.ID
}
