package referral

import (
	"errors"
	"fmt"
	"slices"

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

// transitions: from status → to status → who may make the change.
var transitions = map[string]map[string]Party{
	"requested":   {"received": Owner, "accepted": Owner, "rejected": Owner, "failed": Owner, "cancelled": Requester},
	"received":    {"accepted": Owner, "rejected": Owner, "failed": Owner, "cancelled": Requester},
	"accepted":    {"in-progress": Owner, "completed": Owner, "failed": Owner, "cancelled": Requester},
	"in-progress": {"completed": Owner, "failed": Owner, "cancelled": Requester},
}

// Terminal reports whether a status ends the workflow.
func Terminal(status string) bool { _, open := transitions[status]; return !open }

// CheckTransition says whether by may move a referral Task from one status
// to another; staying in the same non-terminal status is always allowed to
// either party (notes, business status updates).
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
		return fmt.Errorf("%w: %s → %s is not a step of the referral workflow", ErrIllegalTransition, from, to)
	}
	if who&by == 0 {
		return fmt.Errorf("%w: only the %s may move the Task from %s to %s", ErrIllegalTransition, who, from, to)
	}
	return nil
}

// businessStatus is the BSeR code each status must carry (STANDARDS.md
// §7.3); statuses absent here take any code (in-progress: the 5.1.x
// events) or keep the previous one (received).
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

// CheckBusinessStatus says whether code (BSeR, "" when absent) fits the
// new status; prev is the Task's previous code.
func CheckBusinessStatus(status, code, prev string) error {
	if want := businessStatus[status]; want != "" {
		if code != want {
			return fmt.Errorf("%w: a %s referral Task carries businessStatus %s (%s) of %s", ErrIllegalTransition, status, want, BusinessStatusDisplay[want], BusinessStatusSystem)
		}
		return nil
	}
	switch status {
	case "in-progress":
		if code != "" && code != prev && !slices.Contains(inProgressStatus, code) {
			return fmt.Errorf("%w: an in-progress referral Task carries one of the BSeR codes 5.1.1–5.1.4 or 5.2", ErrIllegalTransition)
		}
	case "received":
		if code != prev {
			return fmt.Errorf("%w: receiving a referral Task keeps its businessStatus %s", ErrIllegalTransition, prev)
		}
	}
	return nil
}
