package lru

import "testing"

func TestCache(t *testing.T) {
	c := &Cache[string]{Max: 10, MaxEntry: 6}
	c.Put("a", "A", 4)
	c.Put("b", "B", 4)
	if _, ok := c.Get("a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.Put("c", "C", 4) // over 10: b goes
	if _, ok := c.Get("b"); ok {
		t.Error("b kept beyond the bound")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok := c.Get(k); !ok {
			t.Errorf("%s dropped", k)
		}
	}
	c.Put("big", "X", 7) // larger than MaxEntry: not kept
	if _, ok := c.Get("big"); ok {
		t.Error("an entry over MaxEntry was kept")
	}
	c.Put("a", "A2", 2)
	if v, _ := c.Get("a"); v != "A2" {
		t.Errorf("replace: %q", v)
	}
}
