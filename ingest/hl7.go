package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/convert/hl7v2"
	"github.com/fhirgate/fhirgate/convert/subject"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// HL7Handler files HL7 v2 messages that arrive over MLLP (it is an
// mllp.Handler). Each message is converted, matched to a local Patient by
// its PID-3 identifier (a Patient is created from the message when none
// matches), filed through consolidate in one transaction, and only then
// acknowledged with AA; a message that cannot be parsed or converted is
// answered AR, one that cannot be stored AE, and nothing of it is kept. A
// message whose demographics (name, birth date, sex, identifiers of the
// same system) contradict the Patient its identifier matched is answered AE
// with one ERR per contradiction and nothing is stored: MLLP has no way to
// override this.
type HL7Handler struct {
	// Store receives the record. Required.
	Store storage.Store
	// Consolidator files converted resources; one over Store when nil.
	Consolidator *consolidate.Consolidator
	// Search parses the identifier search that finds the patient; the
	// store must index with the same registry. Required.
	Search *search.Registry
	// Now stamps conversions and acknowledgements; time.Now when nil.
	Now func() time.Time
	// Logger receives failures (never message content); discarded when nil.
	Logger *slog.Logger
}

func (h *HL7Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *HL7Handler) importer() *Importer {
	if h.Consolidator == nil {
		h.Consolidator = &consolidate.Consolidator{Store: h.Store, Now: h.Now}
	}
	return &Importer{Store: h.Store, Consolidator: h.Consolidator, Now: h.Now}
}

// HandleMessage implements mllp.Handler. A batch (FHS/BHS) is answered
// with a batch of acknowledgements, one per message, each message filed
// (or refused) on its own.
func (h *HL7Handler) HandleMessage(ctx context.Context, msg []byte) []byte {
	if audit.ActivityOf(ctx) == nil {
		// over MLLP: what the message files is recorded, in its
		// transactions, as an HL7 v2 import from its sender
		ctx = audit.WithActivity(ctx, &audit.Job{Event: audit.Event{Interaction: "operation", Operation: "hl7v2", Origin: hl7Sender(msg)}})
	}
	if hl7v2.IsBatch(msg) {
		b, err := hl7v2.ParseBatch(msg)
		if err != nil {
			code, errCode := hl7v2.AckCode(err)
			return hl7v2.ACK(nil, code, errCode, err.Error(), h.now())
		}
		acks := make([][]byte, 0, len(b.Messages))
		for _, m := range b.Messages {
			_, ack := h.Handle(ctx, m)
			acks = append(acks, ack)
		}
		return hl7v2.BatchACK(b, acks, h.now())
	}
	_, ack := h.Handle(ctx, msg)
	return ack
}

// hl7Sender names a message's (or batch's) sender for the audit trail:
// "HL7 v2 from <sending application> at <sending facility>" (MSH-3, MSH-4;
// FHS-3, FHS-4), without components.
func hl7Sender(msg []byte) string {
	seg, _, _ := bytes.Cut(msg, []byte("\r"))
	seg, _, _ = bytes.Cut(seg, []byte("\n"))
	if len(seg) < 8 {
		return "HL7 v2"
	}
	fields := bytes.Split(seg, seg[3:4])
	field := func(i int) string {
		if i >= len(fields) {
			return ""
		}
		v, _, _ := bytes.Cut(fields[i], []byte{'^'})
		return string(v)
	}
	out := "HL7 v2"
	if app := field(2); app != "" {
		out += " from " + app
	}
	if fac := field(3); fac != "" {
		out += " at " + fac
	}
	return out
}

// Handle files one message and returns the local Patient's id (when the
// message was stored) and the acknowledgement to send.
func (h *HL7Handler) Handle(ctx context.Context, msg []byte) (patientID string, ack []byte) {
	im := h.importer()
	hm, err := im.ConvertHL7v2(msg)
	if err != nil {
		var m *hl7v2.Message
		if hm != nil {
			m = hm.Message
		}
		code, errCode := hl7v2.AckCode(err)
		return "", hl7v2.ACK(m, code, errCode, err.Error(), h.now())
	}
	pid, err := h.patient(ctx, hm)
	if err == nil {
		// a Patient found by its identifier whose other demographics
		// contradict the message: the wrong patient, or a wrong identifier;
		// either way nothing is filed (MLLP has no override)
		var target *fhir.Resource
		if target, err = h.Store.Read(ctx, "Patient", pid); err == nil {
			if ms := subject.Compare(hm.Subject, subject.FromPatient(target)); len(ms) > 0 {
				h.logger().Warn("HL7 v2 message refused: its demographics contradict the matched Patient", "control_id", hm.Message.ControlID(), "err", (&MismatchError{Mismatches: ms}).Error())
				return "", mismatchACK(hm.Message, ms, h.now())
			}
			_, err = im.FileHL7v2(ctx, pid, hm)
		}
	}
	if err != nil {
		h.logger().Error("HL7 v2 message not stored", "control_id", hm.Message.ControlID(), "err", err)
		return "", hl7v2.ACK(hm.Message, hl7v2.AE, hl7v2.ErrCodeInternal, "the message could not be stored; send it again", h.now())
	}
	return pid, hl7v2.ACK(hm.Message, hl7v2.AA, "", "", h.now())
}

// mismatchACK is the error acknowledgement of a message whose demographics
// contradict the Patient it matched: one ERR per contradiction, located at
// the PID field. It names the fields, not the stored Patient's values: the
// sender must not learn more about a patient than it sent.
func mismatchACK(m *hl7v2.Message, ms []subject.Mismatch, now time.Time) []byte {
	errs := make([]hl7v2.AckError, 0, len(ms))
	for _, mm := range ms {
		e := hl7v2.AckError{Segment: "PID", Sequence: 1, Code: hl7v2.ErrCodeInternal,
			AppCode: "demographics-mismatch", AppText: "Demographics contradict the stored patient",
			Text: mm.Safe()}
		if _, err := fmt.Sscanf(mm.SourcePath, "PID-%d[%d]", &e.Field, &e.FieldRep); err != nil {
			fmt.Sscanf(mm.SourcePath, "PID-%d", &e.Field)
		}
		errs = append(errs, e)
	}
	return hl7v2.ACKErrors(m, hl7v2.AE, "the message's patient demographics contradict the patient its identifier names; nothing was stored", errs, now)
}

func (h *HL7Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// patient finds the local Patient a message is about, or creates it.
//
// The first PID-3 identifier with a system (assigning authority) is
// searched for; duplicate copies that pulls and imports store are not
// local Patients. Without a system the identifier means something only at
// the sending facility, so the Patient is found by an id derived from the
// facility and the value. A new Patient gets an id derived from its
// identifier, so two connections delivering the first messages of one
// patient at once create it once.
func (h *HL7Handler) patient(ctx context.Context, hm *HL7Message) (string, error) {
	system, value := firstIdentifier(hm.Patient)
	var id string
	if system != "" {
		q, err := h.Search.ParseQuery("Patient", url.Values{"identifier": {system + "|" + value}, "_count": {"50"}, "_total": {"none"}}, true)
		if err != nil {
			return "", fmt.Errorf("identifier search: %w", err)
		}
		page, err := h.Store.Search(ctx, storage.SearchRequest{Query: q})
		if err != nil {
			return "", fmt.Errorf("identifier search: %w", err)
		}
		for _, r := range page.Matches {
			if !consolidate.IsDuplicate(r) {
				return r.ID, nil
			}
		}
		id = consolidate.LocalID("", "Patient", "identifier|"+system+"|"+value)
	} else {
		key := "local|" + value
		if value == "" {
			// no identifier at all: the converter's id, derived from the message
			key = "message|" + hm.Patient.ID
		}
		id = consolidate.LocalID(hm.Source, "Patient", key)
	}
	switch _, err := h.Store.Read(ctx, "Patient", id); {
	case err == nil:
		return id, nil
	case errors.Is(err, storage.ErrGone):
		return "", fmt.Errorf("Patient/%s was deleted", id)
	case !errors.Is(err, storage.ErrNotFound):
		return "", err
	}
	local := hm.Patient.WithMeta(id, "", time.Time{})
	if _, err := h.Store.Create(ctx, local); err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
		return "", fmt.Errorf("create Patient/%s: %w", id, err)
	}
	return id, nil
}

// Outcome turns a Result's issues and counts into an OperationOutcome.
func (r *Result) Outcome() *fhir.OperationOutcome {
	created, updated, unchanged := r.Counts()
	issues := []fhir.Issue{{Severity: fhir.SeverityInformation, Code: "informational", Details: &fhir.IssueDetails{
		Text: fmt.Sprintf("filed as source %s: %d resources created, %d updated, %d unchanged", r.Source, created, updated, unchanged),
	}}}
	for i, m := range r.Messages {
		if m.Err == nil {
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityInformation, Code: "informational",
				Details: &fhir.IssueDetails{Text: fmt.Sprintf("message[%d] (MSH-10 %s) filed (AA)", i+1, m.ControlID)}, Expression: []string{fmt.Sprintf("message[%d]", i+1)}})
		}
	}
	return fhir.NewOutcome(append(issues, r.Issues...)...)
}
