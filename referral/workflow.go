package referral

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/release"
)

// Systems of the referral resources.
const (
	// RequisitionSystem identifies one second-opinion request: the
	// ServiceRequest's requisition and every Task's groupIdentifier carry
	// it, so the opinions of several recipients can be compared.
	RequisitionSystem = release.RequisitionSystem
	// BusinessStatusSystem is BSeR's TaskBusinessStatusCS.
	BusinessStatusSystem = "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS"
	// TaskCodeSystem is the system of Task.code "fulfill".
	TaskCodeSystem = "http://hl7.org/fhir/CodeSystem/task-code"
)

// Party is who changes a referral Task.
type Party uint8

const (
	// Owner is the recipient the Task is addressed to (Task.owner).
	Owner Party = 1 << iota
	// Requester is who asked (Task.requester) or the patient (Task.for).
	Requester
	// Custodian is a system client acting for the gateway's custodian: it
	// may act for either side.
	Custodian = Owner | Requester
)

func (p Party) String() string {
	switch p {
	case Owner:
		return "owner"
	case Requester:
		return "requester"
	case Custodian:
		return "custodian"
	}
	return "nobody"
}

// ErrIllegalTransition is a Task status change the workflow does not allow
// (or not to this party).
var ErrIllegalTransition = errors.New("illegal referral Task transition")

// Statuses of the referral workflow, in the order a request goes through
// them.
var Statuses = []string{"requested", "received", "accepted", "in-progress", "on-hold", "completed", "rejected", "cancelled", "failed"}

// transitions: from status → to status → who may make the change. The
// requester (or the patient) cancels; everything else is the owner's.
var transitions = map[string]map[string]Party{
	"requested":   {"received": Owner, "accepted": Owner, "rejected": Owner, "failed": Owner, "cancelled": Requester},
	"received":    {"accepted": Owner, "rejected": Owner, "failed": Owner, "cancelled": Requester},
	"accepted":    {"in-progress": Owner, "on-hold": Owner, "completed": Owner, "failed": Owner, "cancelled": Requester},
	"in-progress": {"on-hold": Owner, "completed": Owner, "failed": Owner, "cancelled": Requester},
	// on-hold: the owner waits for the patient (a follow-up question);
	// the patient's answer resumes the work (Service.Communicate)
	"on-hold": {"in-progress": Owner, "completed": Owner, "failed": Owner, "cancelled": Requester},
}

// Terminal reports whether a status ends the workflow.
func Terminal(status string) bool { _, open := transitions[status]; return !open }

// Step is one allowed change of a referral Task's status.
type Step struct {
	To string
	By Party
}

// NextSteps lists the steps allowed from a status, in workflow order (none
// from a terminal status).
func NextSteps(from string) []Step {
	var out []Step
	for _, to := range Statuses {
		if by, ok := transitions[from][to]; ok {
			out = append(out, Step{To: to, By: by})
		}
	}
	return out
}

// describeSteps says what may follow from: "from accepted the owner may
// move the Task to in-progress, on-hold, completed or failed, the
// requester to cancelled".
func describeSteps(from string) string {
	steps := NextSteps(from)
	if len(steps) == 0 {
		return fmt.Sprintf("a %s Task can no longer change", from)
	}
	var parts []string
	for _, who := range []Party{Owner, Requester} {
		var tos []string
		for _, s := range steps {
			if s.By&who != 0 {
				tos = append(tos, s.To)
			}
		}
		if len(tos) == 0 {
			continue
		}
		list := strings.Join(tos, ", ")
		if n := len(tos); n > 1 {
			list = strings.Join(tos[:n-1], ", ") + " or " + tos[n-1]
		}
		parts = append(parts, fmt.Sprintf("the %s to %s", who, list))
	}
	return "from " + from + " " + strings.Join(parts, ", ")
}

// CheckTransition says whether by may move a referral Task from one status
// to another; staying in the same non-terminal status is always allowed to
// either party (notes, interim reports, business status updates). The
// error names the steps that are allowed.
func CheckTransition(from, to string, by Party) error {
	if from == to {
		if Terminal(from) {
			return fmt.Errorf("%w: the Task is %s and can no longer change", ErrIllegalTransition, from)
		}
		return nil
	}
	next, ok := transitions[from]
	if !ok {
		return fmt.Errorf("%w: the Task is %s and can no longer change", ErrIllegalTransition, from)
	}
	who, ok := next[to]
	if !ok {
		return fmt.Errorf("%w: %s → %s is not a step of the referral workflow; %s", ErrIllegalTransition, from, to, describeSteps(from))
	}
	if who&by == 0 {
		return fmt.Errorf("%w: only the %s may move the Task from %s to %s; %s", ErrIllegalTransition, who, from, to, describeSteps(from))
	}
	return nil
}

// businessStatus is the BSeR code each status carries (STANDARDS.md
// §7.3); statuses absent here keep the code they had (received, on-hold,
// failed) or take one of the in-progress events (in-progress: 5.1.x, 5.2,
// or the code they had).
var businessStatus = map[string]string{
	"requested": "2.0",
	"accepted":  "3.0",
	"rejected":  "4.0",
	"cancelled": "6.0",
	"completed": "7.0",
}

var inProgressStatus = []string{"5.1.1", "5.1.2", "5.1.3", "5.1.4", "5.2"}

// BusinessStatusFor returns the BSeR code a Task in status must carry, ""
// when several are possible or none is defined.
func BusinessStatusFor(status string) string { return businessStatus[status] }

// BusinessStatusDisplay names the BSeR codes.
var BusinessStatusDisplay = map[string]string{
	"2.0": "Service Request Created", "3.0": "Service Request Accepted", "4.0": "Service Request Declined",
	"5.1.1": "Service Request Event Scheduled", "5.1.2": "Scheduled Service Request Event Unattended",
	"5.1.3": "Scheduled Service Request Event Cancelled", "5.1.4": "Service Request Event Completed",
	"5.2": "Service Request Cancellation Requested", "6.0": "Service Request Fulfillment Cancelled",
	"7.0": "Service Request Fulfillment Completed",
}

// ResolveBusinessStatus decides the BSeR code of a Task moving to status:
// code is the one the client sent ("" when absent), prev the Task's
// current one. A client that left the code as it was (or sent none) made
// a status-only change, and the gateway sets the code that matches the
// new status; a code the client changed must fit the status, or the
// change is refused.
func ResolveBusinessStatus(status, code, prev string) (string, error) {
	unchanged := code == "" || code == prev
	if want := businessStatus[status]; want != "" {
		if unchanged || code == want {
			return want, nil
		}
		return "", fmt.Errorf("%w: a %s referral Task carries businessStatus %s (%s) of %s, not %s", ErrIllegalTransition, status, want, BusinessStatusDisplay[want], BusinessStatusSystem, code)
	}
	switch status {
	case "in-progress":
		if unchanged || slices.Contains(inProgressStatus, code) {
			return cmpOr(code, prev), nil
		}
		return "", fmt.Errorf("%w: an in-progress referral Task carries one of the BSeR codes 5.1.1–5.1.4 or 5.2 (or keeps %s), not %s", ErrIllegalTransition, orNone(prev), code)
	default: // received, on-hold, failed
		if unchanged {
			return prev, nil
		}
		return "", fmt.Errorf("%w: a %s referral Task keeps its businessStatus %s, not %s", ErrIllegalTransition, status, orNone(prev), code)
	}
}

// CheckBusinessStatus says whether code (BSeR, "" when absent) fits the
// new status; prev is the Task's previous code.
func CheckBusinessStatus(status, code, prev string) error {
	_, err := ResolveBusinessStatus(status, code, prev)
	return err
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// StateMachine describes the referral Task workflow for people: the
// CapabilityStatement's Task documentation and the README say the same.
func StateMachine() string {
	var b strings.Builder
	b.WriteString("Referral Tasks (Task.groupIdentifier system " + RequisitionSystem + ") follow the second-opinion workflow. ")
	b.WriteString("Allowed steps: ")
	var parts []string
	for _, from := range Statuses {
		if Terminal(from) {
			continue
		}
		parts = append(parts, describeSteps(from))
	}
	b.WriteString(strings.Join(parts, "; "))
	b.WriteString(". completed, rejected, cancelled and failed are final. ")
	b.WriteString("A client may change the status alone (PUT or PATCH): the gateway sets the matching BSeR businessStatus (" + BusinessStatusSystem + "): ")
	var codes []string
	for _, st := range Statuses {
		if c := businessStatus[st]; c != "" {
			codes = append(codes, st+" "+c)
		}
	}
	b.WriteString(strings.Join(codes, ", "))
	b.WriteString("; received, on-hold and failed keep the code they had; in-progress keeps it or takes 5.1.1–5.1.4 or 5.2 (5.1.4 with an interim report in output). ")
	b.WriteString("A businessStatus that contradicts the status, an illegal step, or a change of what was asked (groupIdentifier, intent, code, focus, for, owner, requester, authoredOn, input) answers 409 with the allowed steps; someone who is neither owner nor requester 403. ")
	b.WriteString("A completed Task points at the opinion document in output. The specialist's follow-up question puts the Task on-hold; the patient's answer resumes it.")
	return b.String()
}
