package hl7v2

import (
	"strings"
	"time"
)

// --- SCH, AIS, AIG, AIL, AIP: appointments (IG SCH[Appointment],
// AIS/AIG/AIL/AIP[Appointment]) ---

// fillerStatus maps SCH-25 (table 0278) to Appointment.status.
var fillerStatus = map[string]string{"PENDING": "pending", "WAITLIST": "waitlist", "BOOKED": "booked", "STARTED": "arrived", "COMPLETE": "fulfilled",
	"CANCELLED": "cancelled", "DC": "cancelled", "DELETED": "entered-in-error", "BLOCKED": "booked", "OVERBOOK": "booked", "NOSHOW": "noshow"}

func (c *converter) sch(s *Segment) {
	if c.appointment != nil {
		c.skip("a second SCH: one appointment per message")
		return
	}
	status := fillerStatus[strings.ToUpper(s.Get(25, 1))]
	switch c.trigger {
	case "S15", "S17":
		status = "cancelled"
	case "S26":
		status = "noshow"
	case "S23", "S24":
		if status == "" {
			status = "booked"
		}
	}
	if status == "" {
		status = "booked"
	}
	ap := obj("status", status)
	var ids []any
	if id := entityID(s.Field(1).Rep(0), "PLAC"); id != nil {
		ids = append(ids, id)
	}
	if id := entityID(s.Field(2).Rep(0), "FILL"); id != nil {
		ids = append(ids, id)
	}
	put(ap, "identifier", ids)
	if r := concept(s.Field(7).Rep(0)); len(r) > 0 {
		ap["reasonCode"] = []any{r}
	}
	if t := concept(s.Field(8).Rep(0)); len(t) > 0 {
		ap["appointmentType"] = t
	}
	if r := concept(s.Field(6).Rep(0)); len(r) > 0 && ap["reasonCode"] == nil {
		ap["reasonCode"] = []any{r}
	}
	if tq := s.Field(11).Rep(0); !tq.Empty() {
		put(ap, "start", instant(tq.Comp(4)))
		put(ap, "end", instant(tq.Comp(5)))
	}
	if d := positiveInt(s.Get(9, 1)); d > 0 && (s.Get(10, 1) == "" || strings.EqualFold(s.Get(10, 1), "min") || strings.EqualFold(s.Get(10, 1), "minutes")) {
		ap["minutesDuration"] = d
	}
	ref := c.emit("Appointment", ap)
	c.appointment = &anchor{seg: "SCH", typ: "Appointment", ref: refOf(ref), body: ap}
	c.anchor = *c.appointment
}

// ai adds a service, resource, location or person to the appointment.
func (c *converter) ai(s *Segment) {
	if c.appointment == nil {
		c.skip(s.Name + " without SCH")
		return
	}
	ap := c.appointment.body
	start, startField := "", 0
	switch s.Name {
	case "AIS":
		if st := concept(s.Field(3).Rep(0)); len(st) > 0 {
			appendTo(ap, "serviceType", st)
		}
		startField = 4
	case "AIG":
		who := firstNonEmpty(s.Get(3, 2), s.Get(3, 1))
		if who == "" {
			c.skip("AIG names no resource")
			return
		}
		actor := obj("display", who)
		if id := s.Get(3, 1); id != "" && id != who {
			actor["identifier"] = obj("value", id)
		}
		appendTo(ap, "participant", obj("type", concepts(s.Field(4)), "actor", actor, "status", participantStatus(ap)))
		startField = 8
	case "AIL":
		loc := s.Field(3).Rep(0)
		disp := strings.Join(nonEmpty(loc.Comp(1), loc.Comp(2), loc.Comp(3), loc.Comp(4), loc.Comp(9)), " ")
		if disp == "" {
			c.skip("AIL names no location")
			return
		}
		appendTo(ap, "participant", obj("actor", obj("display", disp), "status", participantStatus(ap)))
		startField = 6
	case "AIP":
		var who map[string]any
		for _, r := range s.Field(3) {
			if who = c.practitioner(r); who != nil {
				break
			}
		}
		if who == nil {
			c.skip("AIP names no person")
			return
		}
		appendTo(ap, "participant", obj("type", concepts(s.Field(4)), "actor", who, "status", participantStatus(ap)))
		startField = 6
	}
	start = instant(s.Get(startField, 1))
	if start != "" && ap["start"] == nil {
		ap["start"] = start
		if d := positiveInt(s.Get(startField+3, 1)); d > 0 {
			unit := strings.ToLower(s.Get(startField+4, 1))
			if unit == "" || unit == "min" || unit == "minutes" || unit == "m" {
				if t, err := time.Parse(time.RFC3339, start); err == nil {
					ap["end"] = t.Add(time.Duration(d) * time.Minute).Format(time.RFC3339)
				}
			}
		}
	}
	c.touch(c.appointment.ref)
	c.anchor = *c.appointment
}

func participantStatus(ap map[string]any) string {
	switch ap["status"] {
	case "proposed", "pending", "waitlist":
		return "needs-action"
	case "cancelled", "noshow", "entered-in-error":
		return "declined"
	}
	return "accepted"
}

// finishAppointment adds the patient as a participant and keeps the
// appointment valid when the sender gave no time (app-3: only proposed,
// cancelled or waitlisted appointments may lack start and end).
func (c *converter) finishAppointment() {
	a := c.appointment
	if a == nil {
		return
	}
	ap := a.body
	if c.patient != nil {
		appendTo(ap, "participant", obj("actor", c.patient, "status", participantStatus(ap)))
	}
	if ap["start"] == nil || ap["end"] == nil {
		switch ap["status"] {
		case "proposed", "cancelled", "waitlist":
		default:
			c.warn("incomplete", "the appointment has no start and end: kept as proposed (the sender said "+ap["status"].(string)+")", "SCH-11")
			ap["description"] = "HL7 v2 status " + ap["status"].(string) + "; no start and end were sent"
			ap["status"] = "proposed"
		}
		if ap["start"] != nil && ap["end"] == nil {
			delete(ap, "start") // app-2: a start needs an end
		}
	}
}
