package release

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/consent"
	"github.com/fhirgate/fhirgate/fhir"
)

// A provider's $everything or search decides hundreds of resources, each
// by parsing it (its compartment, its dates, codes and labels) and
// evaluating the patient's Consents: the same work, with the same answer,
// on every request while neither the resource nor the Consents change.
// What depends only on a resource's content is kept by a hash of that
// content (so a resource that claims another's id and version but says
// something else is never mistaken for it), and a Consent decision by the
// compiled policy (a new one whenever a Consent is written anywhere), the
// request's actors, action and purpose, and the content, until the first
// instant a Consent's period begins or ends (consent.Policy.Stable).

var contentSeed = maphash.MakeSeed()

// contentKey identifies a resource by its type and the hash of its bytes.
type contentKey struct {
	typ, id string
	hash    uint64
	size    int
}

func keyOf(r *fhir.Resource) contentKey {
	return contentKey{typ: r.Type, id: r.ID, hash: maphash.Bytes(contentSeed, r.Raw), size: len(r.Raw)}
}

// Bounds of the caches: beyond them they start again (they hold derived
// data only).
const (
	maxPatientsCached  = 200000
	maxDecisionsCached = 400000
)

type patientsCache struct {
	mu sync.Mutex
	m  map[contentKey][]string
}

func (c *patientsCache) get(k contentKey) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *patientsCache) put(k contentKey, v []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxPatientsCached {
		c.m = map[contentKey][]string{}
	}
	c.m[k] = v
}

type decisionKey struct {
	pol     *consent.Policy
	request string
	res     contentKey
}

type decisionVal struct {
	d           consent.Decision
	from, until time.Time // until zero: no change ever
}

type decisionCache struct {
	mu sync.Mutex
	m  map[decisionKey]decisionVal
}

// requestKey names what of a consent request a decision depends on
// besides its time.
func requestKey(req consent.Request) string {
	var b strings.Builder
	for _, a := range req.Actors {
		b.WriteString(a)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	b.WriteString(req.Action)
	for _, p := range req.Purpose {
		b.WriteByte(1)
		b.WriteString(p.System)
		b.WriteByte(0)
		b.WriteString(p.Code)
	}
	return b.String()
}

// decideResource is pol.DecideResource(req, r), kept while it holds;
// reqKey is requestKey(req) and rk keyOf(r) (the caller has them).
func (d *Decider) decideResource(pol *consent.Policy, req consent.Request, reqKey string, r *fhir.Resource, rk contentKey) consent.Decision {
	k := decisionKey{pol: pol, request: reqKey, res: rk}
	c := &d.decisions
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	if ok && !req.Time.Before(v.from) && (v.until.IsZero() || req.Time.Before(v.until)) {
		return v.d
	}
	dec := pol.DecideResource(req, r)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxDecisionsCached {
		c.m = map[decisionKey]decisionVal{}
	}
	c.m[k] = decisionVal{d: dec, from: req.Time, until: pol.Stable(req.Time)}
	c.mu.Unlock()
	return dec
}
