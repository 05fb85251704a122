package audit

import "context"

// Activity is a unit of work whose writes the trail records: an HTTP
// request, a pull job, an HL7 v2 message. Whoever starts the work puts
// it in the context (WithActivity); the trail's commit hook finds it
// there in every transaction the work commits, so that the events of a
// write commit with the write, whatever code path wrote.
type Activity interface {
	// Describe returns the actor and the action: the Event without its
	// time, outcome, patient and resources, which each event of a write
	// gets from the write.
	Describe() Event
	// Touched lists the patients ("Patient/x") the work touched so far
	// (read, or tried to write).
	Touched() []string
	// Committed tells the activity that a transaction committed the
	// events of its writes for these patients.
	Committed(patients []string)
}

type activityKey struct{}

// WithActivity returns ctx carrying a.
func WithActivity(ctx context.Context, a Activity) context.Context {
	return context.WithValue(ctx, activityKey{}, a)
}

// ActivityOf returns the activity in ctx, or nil.
func ActivityOf(ctx context.Context) Activity {
	a, _ := ctx.Value(activityKey{}).(Activity)
	return a
}

// Job is the Activity of work other than a request to the API: a pull,
// an HL7 v2 message, an ABDM data push. Its Event describes it (an
// Interaction "operation" with the Operation named, the Origin of the
// data, the client that asked for it if any).
type Job struct {
	Event Event
}

// Describe implements Activity.
func (j *Job) Describe() Event { return j.Event }

// Touched implements Activity: a job reads nothing on anyone's behalf.
func (j *Job) Touched() []string { return nil }

// Committed implements Activity.
func (j *Job) Committed([]string) {}
