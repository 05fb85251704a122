package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/referral"
)

// The referral workflow as the issue states it, written out here so that
// the test does not read it from the code under test: from each state, who
// may move the Task where, and the BSeR code each state carries ("" keeps
// the code the Task had).
var (
	wantSteps = map[string]map[string]string{ // from → to → owner | requester
		"requested":   {"received": "owner", "accepted": "owner", "rejected": "owner", "failed": "owner", "cancelled": "requester"},
		"received":    {"accepted": "owner", "rejected": "owner", "failed": "owner", "cancelled": "requester"},
		"accepted":    {"in-progress": "owner", "on-hold": "owner", "completed": "owner", "failed": "owner", "cancelled": "requester"},
		"in-progress": {"on-hold": "owner", "completed": "owner", "failed": "owner", "cancelled": "requester"},
		"on-hold":     {"in-progress": "owner", "completed": "owner", "failed": "owner", "cancelled": "requester"},
	}
	wantCode = map[string]string{"requested": "2.0", "accepted": "3.0", "rejected": "4.0", "cancelled": "6.0", "completed": "7.0"}
	// every R4 Task.status
	taskStatuses = []string{"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
)

// plainPut changes only the status, as a client that knows R4 but not
// BSeR does: it reads the Task, sets status (and output), and PUTs the
// rest back as it was, businessStatus included.
func (f *soFixture) plainPut(t *testing.T, who, task, status, output string) (int, map[string]any) {
	t.Helper()
	cur := jsonMap(t, f.getAs(t, "system", task))
	cur["status"] = status
	if output != "" {
		cur["output"] = []any{map[string]any{"type": map[string]any{"text": "opinion"}, "valueReference": map[string]any{"reference": output}}}
	}
	body, _ := json.Marshal(cur)
	w := f.as(who, http.MethodPut, "/"+task, body)
	return w.Code, jsonMap(t, w.Body.Bytes())
}

// plainPatch replaces /status alone with JSON Patch.
func (f *soFixture) plainPatch(t *testing.T, who, task, status, output string) (int, map[string]any) {
	t.Helper()
	ops := []map[string]any{{"op": "replace", "path": "/status", "value": status}}
	if output != "" {
		ops = append(ops, map[string]any{"op": "add", "path": "/output", "value": []any{map[string]any{"type": map[string]any{"text": "opinion"}, "valueReference": map[string]any{"reference": output}}}})
	}
	body, _ := json.Marshal(ops)
	w := f.as(who, http.MethodPatch, "/"+task, body, "Content-Type: application/json-patch+json")
	return w.Code, jsonMap(t, w.Body.Bytes())
}

func bserOf(task map[string]any) string {
	bs, _ := task["businessStatus"].(map[string]any)
	for _, c := range asSlice(bs["coding"]) {
		cm := c.(map[string]any)
		if cm["system"] == referral.BusinessStatusSystem {
			s, _ := cm["code"].(string)
			return s
		}
	}
	return ""
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func outcomeText(m map[string]any) string {
	var b strings.Builder
	for _, is := range asSlice(m["issue"]) {
		d, _ := is.(map[string]any)["details"].(map[string]any)
		t, _ := d["text"].(string)
		b.WriteString(t + "\n")
	}
	return b.String()
}

// TestTaskPlainClient: a client that knows R4 but not BSeR works a
// referral from requested to completed with status-only PUTs and PATCHes;
// the gateway sets the matching businessStatus at every step; from every
// state it reaches, every status that is not a legal step answers 409
// with an OperationOutcome naming the legal ones; the requester cancels
// another request the same way.
func TestTaskPlainClient(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic", "Organization/clinic2"}, []string{f.c1, f.c2}))
			tk := res.tasks[0]
			prevCode := "2.0"
			// illegal tries every status that is not a step from the
			// Task's state, by the owner, alternating PUT and PATCH
			illegal := func(state string) {
				t.Helper()
				for i, to := range taskStatuses {
					if _, ok := wantSteps[state][to]; ok || to == state {
						continue
					}
					var (
						code int
						body map[string]any
					)
					if i%2 == 0 {
						code, body = f.plainPut(t, "so1", tk, to, "")
					} else {
						code, body = f.plainPatch(t, "so1", tk, to, "")
					}
					if code != http.StatusConflict {
						t.Fatalf("%s → %s: %d, want 409: %v", state, to, code, body)
					}
					text := outcomeText(body)
					for next := range wantSteps[state] {
						if !strings.Contains(text, next) {
							t.Errorf("%s → %s: the outcome does not name the legal step %s: %q", state, to, next, text)
						}
					}
				}
				// the Task did not move
				if got := jsonMap(t, f.getAs(t, "system", tk)); got["status"] != state || bserOf(got) != prevCode {
					t.Fatalf("after refused changes the Task is %v/%s, want %s/%s", got["status"], bserOf(got), state, prevCode)
				}
			}
			path := []struct{ to, output string }{
				{"received", ""}, {"accepted", ""}, {"in-progress", ""}, {"on-hold", ""}, {"in-progress", ""}, {"completed", "opinion"},
			}
			state := "requested"
			illegal(state)
			for i, step := range path {
				var (
					code int
					got  map[string]any
				)
				if step.output == "opinion" {
					step.output = f.postOpinion(t, "so1", tk, res.packages[0])
				}
				if i%2 == 0 {
					code, got = f.plainPut(t, "so1", tk, step.to, step.output)
				} else {
					code, got = f.plainPatch(t, "so1", tk, step.to, step.output)
				}
				if code != http.StatusOK {
					t.Fatalf("%s → %s: %d %v", state, step.to, code, got)
				}
				want := wantCode[step.to]
				if want == "" {
					want = prevCode
				}
				if bserOf(got) != want || got["status"] != step.to {
					t.Fatalf("%s → %s: answered %v/%s, want businessStatus %s", state, step.to, got["status"], bserOf(got), want)
				}
				if stored := jsonMap(t, f.getAs(t, "system", tk)); bserOf(stored) != want {
					t.Fatalf("%s → %s: stored businessStatus %s, want %s", state, step.to, bserOf(stored), want)
				}
				if got["lastModified"] == nil {
					t.Errorf("%s → %s: no lastModified", state, step.to)
				}
				state, prevCode = step.to, want
				if state != "completed" {
					illegal(state)
				}
			}
			// completed is final: nothing moves, status-only or not
			for _, to := range taskStatuses {
				if code, body := f.plainPatch(t, "so1", tk, to, ""); code != http.StatusConflict {
					t.Errorf("completed → %s: %d %v", to, code, body)
				}
			}
			// the patient (requester) cancels the other request with a
			// status-only PATCH; the owner may not cancel
			if code, body := f.plainPatch(t, "so2", res.tasks[1], "cancelled", ""); code != http.StatusConflict || !strings.Contains(outcomeText(body), "requester") {
				t.Errorf("owner cancels: %d %v", code, body)
			}
			code, got := f.plainPatch(t, "patientP", res.tasks[1], "cancelled", "")
			if code != http.StatusOK || bserOf(got) != "6.0" {
				t.Fatalf("patient cancels: %d %v", code, got)
			}
			// a businessStatus the client changed must fit the status
			tk3 := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1})).tasks[0]
			f.step(t, "so1", tk3, "accepted", "4.0", "", http.StatusConflict)
			f.step(t, "so1", tk3, "accepted", "3.0", "", http.StatusOK)
			f.step(t, "so1", tk3, "in-progress", "5.1.1", "", http.StatusOK)
			f.step(t, "so1", tk3, "in-progress", "7.0", "", http.StatusConflict)
			// 5.2 (cancellation requested) is the requester's note on an
			// open Task
			f.step(t, "patientP", tk3, "in-progress", "5.2", "", http.StatusOK)
		})
	}
}

// postOpinion stores a final opinion of the Task with POST Bundle and
// returns its reference.
func (f *soFixture) postOpinion(t *testing.T, who, task, pkg string) string {
	t.Helper()
	w := f.as(who, http.MethodPost, "/Bundle", opinionDoc(f.pid, task, pkg, opinionSpec{status: "final", practitioner: "Practitioner/dr-rao",
		agreement: "agree", urgency: "routine", question: "Do I need a stent?", plan: []concept{statinPlan}}))
	mustStatus(t, w, http.StatusCreated)
	return "Bundle/" + jsonMap(t, w.Body.Bytes())["id"].(string)
}

// TestTaskStateMachinePublished: the CapabilityStatement documents the
// workflow on Task.
func TestTaskStateMachinePublished(t *testing.T) {
	h := newHarness(t, storeKinds[0], serverConfigForFuzz())
	w := h.do(http.MethodGet, "/metadata", nil)
	mustStatus(t, w, http.StatusOK)
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type          string `json:"type"`
				Documentation string `json:"documentation"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &cs); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(cs.Rest[0].Resource, func(r struct {
		Type          string `json:"type"`
		Documentation string `json:"documentation"`
	}) bool {
		return r.Type == "Task"
	})
	if i < 0 {
		t.Fatal("no Task in the CapabilityStatement")
	}
	doc := cs.Rest[0].Resource[i].Documentation
	for from, steps := range wantSteps {
		for to := range steps {
			if !strings.Contains(doc, from) || !strings.Contains(doc, to) {
				t.Errorf("the Task documentation does not name %s → %s: %q", from, to, doc)
			}
		}
	}
	for st, code := range wantCode {
		if !strings.Contains(doc, st+" "+code) {
			t.Errorf("the Task documentation does not give %s its code %s", st, code)
		}
	}
}
