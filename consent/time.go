package consent

import (
	"errors"
	"time"
)

// Interval is a span of time [Start, End). A zero Start or End is open on
// that side; the zero Interval is all of time.
type Interval struct {
	Start, End time.Time
}

// Contains reports whether t is within the interval.
func (iv Interval) Contains(t time.Time) bool {
	return (iv.Start.IsZero() || !t.Before(iv.Start)) && (iv.End.IsZero() || t.Before(iv.End))
}

// Within reports whether all of iv lies inside outer.
func (iv Interval) Within(outer Interval) bool {
	if !outer.Start.IsZero() && (iv.Start.IsZero() || iv.Start.Before(outer.Start)) {
		return false
	}
	if !outer.End.IsZero() && (iv.End.IsZero() || iv.End.After(outer.End)) {
		return false
	}
	return true
}

// Overlaps reports whether iv and o share any instant.
func (iv Interval) Overlaps(o Interval) bool {
	if !iv.End.IsZero() && !o.Start.IsZero() && !iv.End.After(o.Start) {
		return false
	}
	if !o.End.IsZero() && !iv.Start.IsZero() && !o.End.After(iv.Start) {
		return false
	}
	return true
}

var errBadDate = errors.New("not a FHIR date or dateTime")

// digitsAt reports whether s[i:j] are ASCII digits.
func digitsAt(s string, i, j int) bool {
	for ; i < j; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseDateTime turns a FHIR date, dateTime or instant into the interval
// it denotes at its precision: "2020" is all of 2020, "2020-03-01" that
// day (in UTC, since a date has no zone), a full dateTime one instant
// (an interval one nanosecond long). A time must have seconds and a zone,
// as FHIR requires.
func parseDateTime(s string) (Interval, error) {
	switch {
	case len(s) == 4 && digitsAt(s, 0, 4):
		t, err := time.Parse("2006", s)
		if err != nil {
			return Interval{}, errBadDate
		}
		return Interval{t, t.AddDate(1, 0, 0)}, nil
	case len(s) == 7 && digitsAt(s, 0, 4) && s[4] == '-' && digitsAt(s, 5, 7):
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return Interval{}, errBadDate
		}
		return Interval{t, t.AddDate(0, 1, 0)}, nil
	case len(s) == 10 && digitsAt(s, 0, 4) && s[4] == '-' && digitsAt(s, 5, 7) && s[7] == '-' && digitsAt(s, 8, 10):
		t, err := time.Parse(time.DateOnly, s)
		if err != nil { // 2021-02-30
			return Interval{}, errBadDate
		}
		return Interval{t, t.AddDate(0, 0, 1)}, nil
	case len(s) >= 20 && s[10] == 'T' && digitsAt(s, 0, 4) && s[4] == '-' && s[7] == '-':
		// time.Parse insists on seconds and a zone, as FHIR does.
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Interval{}, errBadDate
		}
		return Interval{t, t.Add(time.Nanosecond)}, nil
	}
	return Interval{}, errBadDate
}

// parsePeriod turns a FHIR Period (start and end, each optional) into an
// interval from the beginning of start to the end of end, both at their
// own precision. A Period whose start is after its end is an error.
func parsePeriod(start, end string) (Interval, error) {
	var iv Interval
	if start != "" {
		s, err := parseDateTime(start)
		if err != nil {
			return Interval{}, err
		}
		iv.Start = s.Start
	}
	if end != "" {
		e, err := parseDateTime(end)
		if err != nil {
			return Interval{}, err
		}
		iv.End = e.End
	}
	if !iv.Start.IsZero() && !iv.End.IsZero() && !iv.Start.Before(iv.End) {
		return Interval{}, errors.New("period start is after its end")
	}
	return iv, nil
}

// Stable returns the first instant after t at which the period of one of
// the policy's provisions begins or ends: until then, every decision for a
// given request and data is what it is at t (the request's time is looked
// at only through those periods). The zero Time means no change ever.
func (p *Policy) Stable(t time.Time) time.Time {
	var next time.Time
	consider := func(b time.Time) {
		if !b.IsZero() && b.After(t) && (next.IsZero() || b.Before(next)) {
			next = b
		}
	}
	var walk func(n *node)
	walk = func(n *node) {
		if n.period != nil {
			consider(n.period.Start)
			consider(n.period.End)
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	for _, c := range p.consents {
		walk(c.root)
	}
	return next
}
