// Package consolidate turns what sources deliver into the local record:
// pulled resources get local ids (derived from source and source id, so
// re-pulls are idempotent), their references are rewritten to local ids,
// the same clinical fact from two sources is kept once with a Provenance
// naming every source, and the local Patient is linked to each source's
// patient.
//
// What is written, per source and pull, all in one transaction:
//
//   - every resource, byte for byte as the source sent it except id, meta
//     (meta.source = SourceURI(source), a TagSourceID tag with the source's
//     "Type/id") and rewritten references;
//   - a resource whose fact another source already delivered is stored too,
//     tagged TagDuplicateOf with the kept resource's "Type/id", and its
//     references, like everyone's, point at kept resources;
//   - the source's own Patient is stored as a duplicate of the local Patient;
//     the local Patient gains an identifier (system SourceURI(source), value
//     the patient's id there) and a Patient.link of type "seealso" to that
//     copy;
//   - one Provenance per source and patient (target: the local Patient and
//     every kept resource the source delivered; agent and entity: the
//     source), and one per kept resource that more than one source delivered
//     (target: that resource; an agent per source; an entity per copy).
//
// Nothing changes, not even a version, when a re-pull delivers the same data.
package consolidate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/storage"
)

// Consolidator writes pulled batches into a store.
type Consolidator struct {
	// Store receives the record. Required.
	Store storage.Store
	// Now stamps new Provenance; time.Now when nil.
	Now func() time.Time
	// Validate checks each pulled resource (leniently: issues are reported,
	// the resource is stored anyway); validate.Validate when nil.
	Validate func(*fhir.Resource) []fhir.Issue
	// MaxIssues bounds the issues kept in a Report (IssueCount still counts
	// them all); 200 when 0.
	MaxIssues int

	// Batches for one patient are serialised, so that two sources'
	// batches see each other's facts (READ COMMITTED would let two
	// concurrent transactions miss each other): across processes by a
	// lock the batch's transaction takes in the database (an advisory
	// lock on PostgreSQL, SQLite's single writer), and within this process
	// also by locks, so that batches of one patient queue here instead of
	// each holding a database connection while they wait.
	locks sync.Map // patient id -> *sync.Mutex

	// NoStateCache makes every batch read the patient's record again
	// instead of reusing what the previous batch derived (see cache.go).
	NoStateCache bool
	states       stateCache
}

// Batch is everything one source delivered for one patient in one pull.
type Batch struct {
	// Source is the source's configured id.
	Source string
	// PatientID is the local Patient's id.
	PatientID string
	// SourcePatientID is the patient's id at the source.
	SourcePatientID string
	// Resources are the resources as the source sent them.
	Resources []*fhir.Resource
}

// Report says what a batch changed.
type Report struct {
	Received   int            `json:"received"`
	Created    int            `json:"created"`
	Updated    int            `json:"updated"`
	Unchanged  int            `json:"unchanged"`
	Duplicates int            `json:"duplicates"`
	ByType     map[string]int `json:"byType,omitempty"`
	// IssueCount counts validation issues; Issues holds the first
	// MaxIssues of them. Diagnostics may hold patient data: never log them.
	IssueCount int     `json:"issueCount"`
	Issues     []Issue `json:"issues,omitempty"`
}

// Issue is a validation issue of one pulled resource.
type Issue struct {
	// Resource is "Type/id" at the source.
	Resource    string   `json:"resource"`
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Expression  []string `json:"expression,omitempty"`
	Diagnostics string   `json:"diagnostics,omitempty"`
}

// PatientLock names the database lock (storage.Tx.Lock) that serialises
// the consolidation of one patient's record across gateway replicas.
func PatientLock(patientID string) string { return "consolidate:Patient/" + patientID }

// ErrNoPatient: the local Patient does not exist.
var ErrNoPatient = errors.New("consolidate: local patient not found")

// Apply writes a batch all-or-nothing.
func (c *Consolidator) Apply(ctx context.Context, b Batch) (*Report, error) {
	mu, _ := c.locks.LoadOrStore(b.PatientID, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	var rep *Report
	err := c.Store.InTx(ctx, func(tx storage.Tx) error {
		if err := tx.Lock(ctx, PatientLock(b.PatientID)); err != nil {
			return err
		}
		var err error
		rep, err = c.apply(ctx, tx, b)
		return err
	})
	if err != nil {
		// the state cached for the patient may hold what did not commit
		c.states.Delete(b.PatientID)
		return nil, err
	}
	return rep, nil
}

// copyInfo is one stored copy of a fact.
type copyInfo struct {
	ref, source string
}

// state is what the local record holds before the batch.
type state struct {
	// kept maps a dedup key to the kept resources holding it.
	kept map[string][]copyInfo
	// keptSource is the source of each kept resource.
	keptSource map[string]string
	// dups lists the duplicate copies of each kept resource.
	dups map[string][]copyInfo
	// sigs are the reference signatures of kept resources, srcIDs their
	// "Type/id" at their source.
	sigs   map[string][]string
	srcIDs map[string]string
}

func (c *Consolidator) scan(ctx context.Context, tx storage.Tx, pid string) (*state, error) {
	st := &state{kept: map[string][]copyInfo{}, keptSource: map[string]string{"Patient/" + pid: ""}, dups: map[string][]copyInfo{}, sigs: map[string][]string{}, srcIDs: map[string]string{}}
	var kept []*fhir.Resource
	req := storage.EverythingRequest{PatientID: pid, Count: 1000}
	for {
		page, err := tx.Everything(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Matches {
			src := metaSource(r)
			if !strings.HasPrefix(src, SourcePrefix) || tag(r, TagGenerated) != "" {
				continue // the gateway's own resources are not facts from a source
			}
			src = strings.TrimPrefix(src, SourcePrefix)
			ref := r.Type + "/" + r.ID
			if of := DuplicateOf(r); of != "" {
				st.dups[of] = append(st.dups[of], copyInfo{ref, src})
				continue
			}
			st.keptSource[ref] = src
			kept = append(kept, r)
		}
		if page.Next == "" {
			break
		}
		req.Cursor = page.Next
	}
	// keys last: content keys need to know every kept resource
	for _, r := range kept {
		ci := copyInfo{r.Type + "/" + r.ID, st.keptSource[r.Type+"/"+r.ID]}
		for _, k := range dedupKeys(r) {
			st.kept[k] = append(st.kept[k], ci)
		}
		st.sigs[ci.ref] = refSig(r.Root())
		st.srcIDs[ci.ref] = tag(r, TagSourceID)
	}
	return st, nil
}

// norm keeps a local reference to a kept resource and reduces any other
// to its type.
func (st *state) norm(ref string) string {
	if _, ok := st.keptSource[ref]; ok {
		return ref
	}
	typ, _, _ := strings.Cut(ref, "/")
	return typ
}

// claimed reports whether kept already has a copy from source.
func (st *state) claimed(kept, source string) bool {
	if st.keptSource[kept] == source {
		return true
	}
	for _, d := range st.dups[kept] {
		if d.source == source {
			return true
		}
	}
	return false
}

type item struct {
	res      *fhir.Resource
	srcRef   string
	localID  string
	dupOf    string // local ref of the kept resource, "" when kept
	existing *fhir.Resource
	refs     []string // relative references, "Type/id" at the source
}

// srcRefs lists the relative references in a resource as "Type/id".
func srcRefs(v *fjson.Value) []string {
	var out []string
	var walk func(v *fjson.Value)
	walk = func(v *fjson.Value) {
		switch v.Kind {
		case fjson.Object:
			for _, m := range v.Members {
				if m.Key == "reference" && m.Value.Kind == fjson.String {
					parts := strings.Split(m.Value.Str, "/")
					if len(parts) >= 2 {
						out = append(out, parts[0]+"/"+parts[1])
					}
					continue
				}
				walk(m.Value)
			}
		case fjson.Array:
			for _, it := range v.Items {
				walk(it)
			}
		}
	}
	walk(v)
	return out
}

func (c *Consolidator) apply(ctx context.Context, tx storage.Tx, b Batch) (*Report, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	check := c.Validate
	if check == nil {
		check = validate.Validate
	}
	maxIssues := cmpOr(c.MaxIssues, 200)
	rep := &Report{Received: len(b.Resources), ByType: map[string]int{}}

	local, err := tx.Read(ctx, "Patient", b.PatientID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
			return nil, fmt.Errorf("%w: Patient/%s", ErrNoPatient, b.PatientID)
		}
		return nil, err
	}
	localRef := "Patient/" + b.PatientID
	st, err := c.stateFor(ctx, tx, b.PatientID)
	if err != nil {
		return nil, fmt.Errorf("read the local record: %w", err)
	}

	// Pass 1: decide for each resource whether it is kept or duplicates a
	// fact another source delivered. Content keys hold the kept targets of
	// references, so resources are decided after those they refer to
	// (cycles, rare, are decided with the references still open).
	refMap := map[string]string{}
	var pending []*item
	seen := map[string]bool{}
	for _, r := range b.Resources {
		rep.ByType[r.Type]++
		if r.ID == "" {
			rep.IssueCount++
			if len(rep.Issues) < maxIssues {
				rep.Issues = append(rep.Issues, Issue{Resource: r.Type, Severity: "error", Code: "required", Diagnostics: "the source sent a resource without an id; it was not stored"})
			}
			continue
		}
		srcRef := r.Type + "/" + r.ID
		if seen[srcRef] {
			continue // the adapter contract says once; a second copy adds nothing
		}
		seen[srcRef] = true
		for _, is := range check(r) {
			rep.IssueCount++
			if len(rep.Issues) < maxIssues {
				rep.Issues = append(rep.Issues, Issue{Resource: srcRef, Severity: is.Severity, Code: is.Code, Expression: is.Expression, Diagnostics: is.Diagnostics})
			}
		}
		pending = append(pending, &item{res: r, srcRef: srcRef, localID: LocalID(b.Source, r.Type, r.ID), refs: srcRefs(r.Root())})
	}
	inBatch := func(ref string) bool { return seen[ref] }
	decide := func(it *item) error {
		r := it.res
		ex, err := tx.Read(ctx, r.Type, it.localID)
		switch {
		case err == nil:
			it.existing = ex
			it.dupOf = DuplicateOf(ex) // a re-pull keeps the role it had
		case errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone):
		default:
			return err
		}
		if r.Type == "Patient" && r.ID == b.SourcePatientID {
			it.dupOf = localRef
		} else if it.existing == nil {
			it.dupOf = st.match(r, b.Source, func(ref string) string {
				if to, ok := refMap[ref]; ok {
					return st.norm(to)
				}
				typ, _, _ := strings.Cut(ref, "/")
				return typ
			}, inBatch)
		}
		if it.dupOf != "" {
			refMap[it.srcRef] = it.dupOf
			if it.existing == nil {
				// later resources of this batch must not claim it again
				st.dups[it.dupOf] = append(st.dups[it.dupOf], copyInfo{r.Type + "/" + it.localID, b.Source})
			}
		} else {
			own := r.Type + "/" + it.localID
			refMap[it.srcRef] = own
			st.keptSource[own] = b.Source
		}
		return nil
	}
	items := make([]*item, 0, len(pending))
	for len(pending) > 0 {
		progress := false
		rest := pending[:0]
		for _, it := range pending {
			ready := true
			for _, ref := range it.refs {
				if _, done := refMap[ref]; !done && inBatch(ref) && ref != it.srcRef {
					ready = false
					break
				}
			}
			if !ready {
				rest = append(rest, it)
				continue
			}
			if err := decide(it); err != nil {
				return nil, err
			}
			items = append(items, it)
			progress = true
		}
		pending = rest
		if !progress {
			// a reference cycle: decide one and carry on
			if err := decide(pending[0]); err != nil {
				return nil, err
			}
			items = append(items, pending[0])
			pending = pending[1:]
		}
	}

	// Pass 2: rewrite references and meta, and write what changed.
	var creates []*fhir.Resource
	var ws []written
	keptByThis := map[string]bool{}
	for _, it := range items {
		out, err := rewrite(it.res, it.localID, b.Source, it.srcRef, it.dupOf, refMap, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", it.srcRef, err)
		}
		if it.dupOf != "" {
			rep.Duplicates++
			if it.dupOf != localRef {
				keptByThis[it.dupOf] = true
			}
		} else {
			keptByThis[it.res.Type+"/"+it.localID] = true
		}
		changed, err := c.put(ctx, tx, out, it.existing, &creates, rep)
		if err != nil {
			return nil, err
		}
		if changed {
			ws = append(ws, written{it.existing, out})
		}
	}
	if len(creates) > 0 {
		if _, err := tx.CreateMany(ctx, creates); err != nil {
			return nil, err
		}
		creates = creates[:0]
	}

	// The local Patient names the source's patient.
	if b.SourcePatientID != "" {
		if p, changed, err := linkPatient(local, b.Source, b.SourcePatientID); err != nil {
			return nil, err
		} else if changed {
			if _, _, err := tx.Update(ctx, p, storage.UpdateOptions{IfMatch: local.VersionID}); err != nil {
				return nil, fmt.Errorf("link %s: %w", localRef, err)
			}
		}
	}

	// Provenance: one per source and patient, one per fact several
	// sources delivered.
	recorded := fhir.FormatInstant(now())
	targets := []string{localRef}
	for ref := range keptByThis {
		targets = append(targets, ref)
	}
	slices.Sort(targets[1:])
	if err := c.putProvenance(ctx, tx, LocalID(b.Source, "Provenance", "pull/"+b.PatientID), batchProvenance(b.Source, targets), recorded, &creates); err != nil {
		return nil, err
	}
	for ref := range keptByThis {
		copies := []copyInfo{{ref, st.keptSource[ref]}}
		if copies[0].source == "" {
			copies[0].source = b.Source // kept just now
		}
		copies = append(copies, st.dups[ref]...)
		if len(copies) < 2 {
			continue
		}
		if err := c.putProvenance(ctx, tx, LocalID("", "Provenance", "dedup/"+ref), dedupProvenance(ref, copies), recorded, &creates); err != nil {
			return nil, err
		}
	}
	if len(creates) > 0 {
		if _, err := tx.CreateMany(ctx, creates); err != nil {
			return nil, err
		}
	}
	if err := c.remember(ctx, tx, b.PatientID, st, ws); err != nil {
		return nil, err
	}
	return rep, nil
}

// match returns the kept resource of another source that r duplicates, or "".
//
// Keys are tried strongest first (identifiers, the type's key, content);
// among the candidates of a key, one whose references point at different
// kept resources is not the same fact, and the one agreeing on most
// references wins.
//
// A candidate with the same source id as another resource of the batch is
// left to that one, so that identical twins pair up by id.
func (st *state) match(r *fhir.Resource, source string, norm func(string) string, inBatch func(string) bool) string {
	sig := refSig(r.Root())
	self := r.Type + "/" + r.ID
	best, bestScore := "", -1
	tried := map[string]bool{}
	for _, k := range dedupKeys(r) {
		for _, kc := range st.kept[k] {
			if tried[kc.ref] || kc.source == source || st.claimed(kc.ref, source) {
				continue
			}
			if strings.HasPrefix(k, "id|") && st.shared(k, kc.source) {
				continue // an "identifier" many resources carry identifies none
			}
			tried[kc.ref] = true
			id := st.srcIDs[kc.ref]
			if id != self && inBatch(id) {
				continue
			}
			score, conflict := st.refScore(sig, norm, kc, strings.HasPrefix(k, "c|"))
			if conflict {
				continue
			}
			if id == self {
				// the same id at two sources is evidence too (sources fed by
				// one another keep ids); it decides between identical twins
				score += 1000
			}
			// equal scores: the smallest reference, so that the choice
			// does not depend on the order the record was read in
			if score > bestScore || score == bestScore && kc.ref < best {
				best, bestScore = kc.ref, score
			}
		}
	}
	return best
}

// shared reports whether several kept resources of source hold key.
func (st *state) shared(key, source string) bool {
	n := 0
	for _, kc := range st.kept[key] {
		if kc.source == source {
			n++
		}
	}
	return n > 1
}

// refScore compares the references of a pulled resource (sig, as the
// source sent them) with those of a kept candidate, position by position:
// the same kept target, or the id the candidate's source would have given
// the same source reference, agree; two different kept targets conflict
// (then they are not the same fact); anything else is unknown.
//
// With strict (content keys, the weakest evidence), two references to
// different targets that are not stored (the candidate's source did not
// deliver its target) conflict too: only the ids tell such resources apart.
func (st *state) refScore(sig []string, norm func(string) string, cand copyInfo, strict bool) (agree int, conflict bool) {
	other := st.sigs[cand.ref]
	if len(sig) != len(other) {
		return 0, false
	}
	for i, a := range sig {
		b := other[i]
		an := norm(a)
		if an == b && strings.Contains(an, "/") {
			agree++
			continue
		}
		if typ, id, ok := strings.Cut(a, "/"); ok && fhir.IsResourceType(typ) && (b == typ+"/"+LocalID(cand.source, typ, id) || st.srcIDs[b] == a) {
			agree++
			continue
		}
		_, bKept := st.keptSource[b]
		if strings.Contains(an, "/") && bKept {
			return agree, true
		}
		if strict && a != b && strings.Contains(a, "/") && strings.Contains(b, "/") {
			return agree, true
		}
	}
	return agree, false
}

// put queues a create, writes an update, or counts an unchanged resource.
// It reports whether out is (to be) written.
func (c *Consolidator) put(ctx context.Context, tx storage.Tx, out, existing *fhir.Resource, creates *[]*fhir.Resource, rep *Report) (bool, error) {
	if existing == nil {
		*creates = append(*creates, out)
		rep.Created++
		return true, nil
	}
	if sameContent(out, existing) {
		rep.Unchanged++
		return false, nil
	}
	if _, _, err := tx.Update(ctx, out, storage.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("update %s/%s: %w", out.Type, out.ID, err)
	}
	rep.Updated++
	return true, nil
}

// sameContent compares two versions ignoring meta.versionId and
// meta.lastUpdated.
func sameContent(a, b *fhir.Resource) bool {
	strip := func(r *fhir.Resource) []byte {
		return r.Rewrite(r.ID, func(ms []fjson.Member) []fjson.Member {
			return slices.DeleteFunc(ms, func(m fjson.Member) bool { return m.Key == "versionId" || m.Key == "lastUpdated" })
		}, "", time.Time{}).Raw
	}
	return string(strip(a)) == string(strip(b))
}

// rewrite returns the stored form of a pulled resource: references
// rewritten to local ids, id set, meta.source and tags set, everything
// else as the source sent it.
func rewrite(r *fhir.Resource, localID, source, srcRef, dupOf string, refMap map[string]string, generated string) (*fhir.Resource, error) {
	root, err := fjson.Parse(r.Raw) // a private tree: the adapter's stays untouched
	if err != nil {
		return nil, err
	}
	rewriteRefs(root, source, refMap)
	res, err := fhir.FromValue(root)
	if err != nil {
		return nil, err
	}
	return res.Rewrite(localID, func(ms []fjson.Member) []fjson.Member {
		ms = slices.DeleteFunc(ms, func(m fjson.Member) bool { return m.Key == "versionId" || m.Key == "lastUpdated" })
		ms = setMember(ms, "source", str(SourceURI(source)))
		var tags []*fjson.Value
		for i, m := range ms {
			if m.Key == "tag" {
				for _, t := range items(m.Value) {
					switch t.Get("system").String() {
					case TagSourceID, TagDuplicateOf, TagGenerated:
					default:
						tags = append(tags, t)
					}
				}
				ms = slices.Delete(ms, i, i+1)
				break
			}
		}
		tags = append(tags, coding(TagSourceID, srcRef))
		if dupOf != "" {
			tags = append(tags, coding(TagDuplicateOf, dupOf))
		}
		return append(ms, fjson.Member{Key: "tag", Value: &fjson.Value{Kind: fjson.Array, Items: tags}})
	}, "", time.Time{}), nil
}

// rewriteRefs replaces relative references "Type/id" (and
// "Type/id/_history/v") with local ones: refMap for resources of the batch,
// the derived local id for others (they may arrive in a later pull).
// Absolute, contained ("#x") and logical references stay as sent.
func rewriteRefs(v *fjson.Value, source string, refMap map[string]string) {
	switch v.Kind {
	case fjson.Object:
		for i := range v.Members {
			m := &v.Members[i]
			if m.Key == "reference" && m.Value.Kind == fjson.String {
				if to, ok := localRef(m.Value.Str, source, refMap); ok {
					m.Value = str(to)
				}
				continue
			}
			rewriteRefs(m.Value, source, refMap)
		}
	case fjson.Array:
		for _, it := range v.Items {
			rewriteRefs(it, source, refMap)
		}
	}
}

func localRef(ref, source string, refMap map[string]string) (string, bool) {
	parts := strings.Split(ref, "/")
	if (len(parts) != 2 && len(parts) != 4) || !fhir.IsResourceType(parts[0]) || !fhir.ValidID(parts[1]) {
		return "", false
	}
	if len(parts) == 4 && parts[2] != "_history" {
		return "", false
	}
	// a version at the source means nothing here: point at the resource
	key := parts[0] + "/" + parts[1]
	if to, ok := refMap[key]; ok {
		return to, true
	}
	return parts[0] + "/" + LocalID(source, parts[0], parts[1]), true
}

func str(s string) *fjson.Value {
	return &fjson.Value{Kind: fjson.String, Str: s, Raw: fjson.AppendString(nil, s)}
}

func coding(system, code string) *fjson.Value {
	return &fjson.Value{Kind: fjson.Object, Members: []fjson.Member{{Key: "system", Value: str(system)}, {Key: "code", Value: str(code)}}}
}

func setMember(ms []fjson.Member, key string, v *fjson.Value) []fjson.Member {
	for i := range ms {
		if ms[i].Key == key {
			ms[i].Value = v
			return ms
		}
	}
	return append(ms, fjson.Member{Key: key, Value: v})
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// Get reads a resource for a source that files through the consolidator
// (package abdm's Records): nil, and no error, when it does not exist or
// was deleted.
func (c *Consolidator) Get(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := c.Store.Read(ctx, typ, id)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrGone) {
		return nil, nil
	}
	return r, err
}

// Put stores a resource a source authors itself (ABDM's Consents),
// creating or replacing it.
func (c *Consolidator) Put(ctx context.Context, res *fhir.Resource) error {
	_, _, err := c.Store.Update(ctx, res, storage.UpdateOptions{AllowCreate: true})
	return err
}

// Remove deletes what a source withdraws ("Type/id"), all or nothing;
// resources already gone are fine.
func (c *Consolidator) Remove(ctx context.Context, refs []string) error {
	if len(refs) == 0 {
		return nil
	}
	return c.Store.InTx(ctx, func(tx storage.Tx) error {
		for _, ref := range refs {
			typ, id, ok := strings.Cut(ref, "/")
			if !ok {
				continue
			}
			if _, err := tx.Delete(ctx, typ, id, storage.DeleteOptions{}); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("delete %s: %w", ref, err)
			}
		}
		return nil
	})
}
