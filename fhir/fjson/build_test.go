package fjson

import (
	"encoding/json"
	"testing"
)

// TestBuild: what Build makes is what Parse reads from its own text.
func TestBuild(t *testing.T) {
	doc := map[string]any{
		"zeta": []any{"a\"b\n", json.Number("1.50"), 3, true, nil, map[string]any{}},
		"id":   "x", "resourceType": "Basic", "given": []string{"Ann", "Bo"},
		"bad": "caf\xe9", "deep": map[string]any{"k": []any{map[string]any{"v": false}}},
	}
	v, err := Build(doc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(v.Raw)
	if err != nil {
		t.Fatalf("%v: %s", err, v.Raw)
	}
	if !Equal(v, p) || string(AppendCompact(nil, p)) != string(v.Raw) {
		t.Fatalf("built %s, parsed back differently", v.Raw)
	}
	if v.Members[0].Key != "resourceType" || v.Members[1].Key != "id" {
		t.Errorf("key order %s", v.Raw)
	}
	if v.Get("bad").Str != "caf\uFFFD" {
		t.Errorf("invalid UTF-8: %q", v.Get("bad").Str)
	}
	for _, bad := range []any{map[string]any{"f": 1.5}, json.Number("x")} {
		if _, err := Build(bad); err == nil {
			t.Errorf("Build(%v) accepted", bad)
		}
	}
}
