package conformance

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestKnownGatewayBugs(t *testing.T) {
	saved := knownGatewayBugs
	t.Cleanup(func() { knownGatewayBugs = saved })
	knownGatewayBugs = map[string]string{"*/search:_x": "x is ignored", "rest/y": "y is wrong"}
	r := &runner{results: map[string][]Result{}}
	r.record("Patient", Result{Check: "Patient/search:_x", Status: Fail, Detail: "got nothing"})
	r.record(groupREST, Result{Check: "rest/y", Status: Pass, Detail: "fine"})
	r.record(groupREST, Result{Check: "rest/z", Status: Fail, Detail: "broken"})
	r.record(groupREST, Result{Check: "rest/ok", Status: Pass})
	rep := &Report{Results: r.collect()}
	want := map[string]Status{"Patient/search:_x": KnownBug, "rest/y": Fail, "rest/z": Fail, "rest/ok": Pass}
	for _, res := range rep.Results {
		if res.Status != want[res.Check] {
			t.Errorf("%s: %v, want %v", res.Check, res.Status, want[res.Check])
		}
		if res.Check == "rest/y" && !strings.Contains(res.Detail, "remove it") {
			t.Errorf("a listed check that passes must say to remove it: %q", res.Detail)
		}
	}
	if rep.OK() || len(rep.Failures()) != 2 || len(rep.KnownBugs()) != 1 {
		t.Errorf("OK %v, %d failures, %d known bugs", rep.OK(), len(rep.Failures()), len(rep.KnownBugs()))
	}
	// the REST group comes before resource types
	if rep.Results[0].Check != "rest/y" {
		t.Errorf("first result %s", rep.Results[0].Check)
	}
}

func TestWriteTable(t *testing.T) {
	saved := knownGatewayBugs
	t.Cleanup(func() { knownGatewayBugs = saved })
	knownGatewayBugs = map[string]string{"rest/k": "k is known"}
	rep := &Report{BaseURL: "http://x", RunID: "abc", Results: []Result{
		{Check: "rest/p", Claim: "rest:p", Status: Pass, Detail: "fine"},
		{Check: "rest/f", Claim: "rest:f", Status: Fail, Detail: "GET /x -> 500\nline two"},
		{Check: "rest/k", Claim: "rest:k", Status: KnownBug, Detail: "still wrong"},
	}}
	for _, tc := range []struct {
		mode    TableMode
		want    []string
		notWant []string
	}{
		{TableAll, []string{"CHECK", "rest/p", "pass", "rest/f", "FAIL", "GET /x -> 500 line two", "Known gateway bugs (1", "k is known", "3 checks: 1 passed, 1 failed, 1 known gateway bugs"}, nil},
		{TableProblems, []string{"rest/f", "rest/k"}, []string{"rest/p "}},
	} {
		var b bytes.Buffer
		if err := rep.WriteTable(&b, tc.mode); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("mode %d: no %q in\n%s", tc.mode, w, b.String())
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(b.String(), w) {
				t.Errorf("mode %d: %q in\n%s", tc.mode, w, b.String())
			}
		}
	}
}

func TestRunOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		bad  bool // ErrBadOptions, else another error
	}{
		{"no URL", Options{}, true},
		{"upper-case run id", Options{BaseURL: "http://127.0.0.1:1", RunID: "ABC"}, true},
		{"run id with a dash", Options{BaseURL: "http://127.0.0.1:1", RunID: "a-b"}, true},
		{"long run id", Options{BaseURL: "http://127.0.0.1:1", RunID: strings.Repeat("a", 21)}, true},
		{"nothing listens", Options{BaseURL: "http://127.0.0.1:1", RunID: "abc"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(context.Background(), tc.opts)
			if err == nil || rep != nil {
				t.Fatalf("Run = %v, %v; want an error", rep, err)
			}
			if errors.Is(err, ErrBadOptions) != tc.bad {
				t.Errorf("err %v; ErrBadOptions %v, want %v", err, errors.Is(err, ErrBadOptions), tc.bad)
			}
		})
	}
	if id := randomID(); len(id) != 10 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Errorf("randomID %q", id)
	}
}

func TestClaimTable(t *testing.T) {
	for _, tc := range []struct {
		cl    claim
		check string
		want  bool
	}{
		{claim{group: "Observation", kind: "searchParam:token"}, "Observation/search:token:code", true},
		{claim{group: "Observation", kind: "searchParam:token"}, "Patient/search:token:code", false},
		{claim{group: "Observation", kind: "searchParam:token"}, "Observation/search:string:code", false},
		{claim{group: "Observation", kind: "searchParam:token"}, "Observation/search:token:", false},
		{claim{group: "Observation", kind: "interaction:read"}, "Observation/read", true},
		{claim{group: "Observation", kind: "interaction:read"}, "Observation/vread", false},
		{claim{group: "Observation", kind: "interaction:read"}, "XObservation/read", false},
		{claim{group: groupCapabilities, kind: "patchFormat:application/json-patch+json"}, "Bundle/patch", true},
		{claim{group: groupSystem, kind: "system:transaction"}, "system/transaction-atomic", true},
		{claim{group: "Patient", kind: "operation:everything"}, "Patient/$everything", true},
		{claim{group: "Patient", kind: "operation:lastn"}, "Patient/$lastn", false}, // no check exists
		{claim{group: "Observation", kind: "searchInclude"}, "Observation/include:subject", true},
	} {
		if got := tc.cl.coveredBy(tc.check); got != tc.want {
			t.Errorf("%s covered by %s: %v, want %v", tc.cl.kind, tc.check, got, tc.want)
		}
	}
	// every kind a statement can make has at least one check
	for kind, checks := range claimTable {
		if len(checks) == 0 {
			t.Errorf("%s: no checks", kind)
		}
	}
}
