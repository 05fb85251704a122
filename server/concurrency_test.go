package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
)

// raceRounds is how many rounds each concurrency test runs; each round
// starts raceWriters writers at once.
const (
	raceRounds  = 25
	raceWriters = 24
)

// race runs n calls of fn at once (released together) and returns their
// statuses.
func race(n int, fn func(i int) int) []int {
	statuses := make([]int, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			statuses[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return statuses
}

// countMatches counts the current resources a search matches.
func countMatches(t *testing.T, h *harness, path string) int {
	t.Helper()
	w := h.do(http.MethodGet, path+"&_summary=count", nil)
	mustStatus(t, w, http.StatusOK)
	m := jsonMap(t, w.Body.Bytes())
	n, err := m["total"].(interface{ Int64() (int64, error) }).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// TestConditionalCreateRace races conditional creates on one identifier,
// in all three forms (POST If-None-Exist, conditional PUT, transaction
// ifNoneExist), mixed: exactly one resource is stored per round, and every
// writer is answered as R4 says for a condition that matches one resource
// (200, or 201 for the one that created it).
func TestConditionalCreateRace(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		for round := 0; round < raceRounds; round++ {
			ident := fmt.Sprintf("race-%d", round)
			cond := "identifier=" + url.QueryEscape("http://race.example/mrn|"+ident)
			body := []byte(`{"resourceType":"Patient","identifier":[{"system":"http://race.example/mrn","value":"` + ident + `"}],"active":true}`)
			statuses := race(raceWriters, func(i int) int {
				switch i % 3 {
				case 0:
					return h.do(http.MethodPost, "/Patient", body, "If-None-Exist: "+cond).Code
				case 1:
					return h.do(http.MethodPut, "/Patient?"+cond, body).Code
				default:
					tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:6f0d1b1e-0000-4000-8000-00000000000` + fmt.Sprint(i%10) + `",
						"resource":` + string(body) + `,"request":{"method":"POST","url":"Patient","ifNoneExist":"` + cond + `"}}]}`)
					w := h.do(http.MethodPost, "/", tx)
					if w.Code != http.StatusOK {
						return w.Code
					}
					// the entry's own status: 201 created or 200 matched
					entry := jsonMap(t, w.Body.Bytes())["entry"].([]any)[0].(map[string]any)
					var st int
					fmt.Sscan(entry["response"].(map[string]any)["status"].(string), &st)
					return st
				}
			})
			created := 0
			for i, st := range statuses {
				switch st {
				case http.StatusCreated:
					created++
				case http.StatusOK:
				default:
					t.Fatalf("round %d writer %d (form %d): status %d", round, i, i%3, st)
				}
			}
			if n := countMatches(t, h, "/Patient?"+cond); n != 1 {
				t.Fatalf("round %d: %d Patients with the identifier, want 1 (statuses %v)", round, n, statuses)
			}
			// conditional PUTs that matched updated the one resource; POSTs
			// and transactions that matched created nothing
			if created != 1 {
				t.Fatalf("round %d: %d writers answered 201, want 1 (statuses %v)", round, created, statuses)
			}
		}
	})
}

// TestIfMatchUpdateRace races updates that all carry the same If-Match:
// exactly one wins, the others answer 412, and the history has one new
// version.
func TestIfMatchUpdateRace(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		for round := 0; round < raceRounds; round++ {
			id := fmt.Sprintf("ifmatch-%d", round)
			w := h.do(http.MethodPut, "/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`"}`))
			mustStatus(t, w, http.StatusCreated)
			statuses := race(raceWriters, func(i int) int {
				b := []byte(fmt.Sprintf(`{"resourceType":"Patient","id":"%s","gender":"other","birthDate":"2000-01-%02d"}`, id, i+1))
				return h.do(http.MethodPut, "/Patient/"+id, b, `If-Match: W/"1"`).Code
			})
			won := 0
			for i, st := range statuses {
				switch st {
				case http.StatusOK:
					won++
				case http.StatusPreconditionFailed:
				default:
					t.Fatalf("round %d writer %d: status %d", round, i, st)
				}
			}
			if won != 1 {
				t.Fatalf("round %d: %d updates won, want 1 (%v)", round, won, statuses)
			}
			w = h.do(http.MethodGet, "/Patient/"+id+"/_history", nil)
			mustStatus(t, w, http.StatusOK)
			if n := len(jsonMap(t, w.Body.Bytes())["entry"].([]any)); n != 2 {
				t.Fatalf("round %d: %d versions, want 2", round, n)
			}
		}
	})
}

// TestUpdateAsCreateRace races plain PUTs of one new id: one creates it
// (201), the others update it (200); nothing fails.
func TestUpdateAsCreateRace(t *testing.T) {
	eachStore(t, func(t *testing.T, h *harness) {
		for round := 0; round < raceRounds; round++ {
			id := fmt.Sprintf("upsert-%d", round)
			statuses := race(raceWriters, func(i int) int {
				b := []byte(fmt.Sprintf(`{"resourceType":"Patient","id":"%s","birthDate":"2000-01-%02d"}`, id, i+1))
				return h.do(http.MethodPut, "/Patient/"+id, b).Code
			})
			created := 0
			for i, st := range statuses {
				switch st {
				case http.StatusCreated:
					created++
				case http.StatusOK:
				default:
					t.Fatalf("round %d writer %d: status %d", round, i, st)
				}
			}
			if created != 1 {
				t.Fatalf("round %d: %d creates, want 1 (%v)", round, created, statuses)
			}
			w := h.do(http.MethodGet, "/Patient/"+id+"/_history", nil)
			mustStatus(t, w, http.StatusOK)
			if n := len(jsonMap(t, w.Body.Bytes())["entry"].([]any)); n != raceWriters {
				t.Fatalf("round %d: %d versions, want %d", round, n, raceWriters)
			}
		}
	})
}
