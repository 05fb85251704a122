package adaptertest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
)

// syntheticPerFile is how many generated resources go in one export file.
const syntheticPerFile = 25000

type exportJob struct {
	id       string
	request  string
	created  time.Time
	polls    int
	canceled bool
	files    []*exportFile
}

type exportFile struct {
	typ, name string
	keys      []string
	// synthetic files hold generated resources from..to-1 instead of keys.
	from, to int
}

func (f *exportFile) count() int {
	if f.keys == nil {
		return f.to - f.from
	}
	return len(f.keys)
}

// kickoff starts an export (Bulk Data kick-off: Patient and Group level,
// GET with query parameters or POST with a Parameters body).
func (u *Upstream) kickoff(w http.ResponseWriter, r *http.Request) {
	if !u.opts.Export {
		writeOutcome(w, http.StatusNotFound, "not-supported", "$export is not offered")
		return
	}
	if !strings.Contains(r.Header.Get("Prefer"), "respond-async") {
		writeOutcome(w, http.StatusBadRequest, "invalid", "Prefer: respond-async is required")
		return
	}
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir/"), "/")
	var (
		patients       []string
		since, typeArg string
		format         string
	)
	q := r.URL.Query()
	since, typeArg, format = q.Get("_since"), strings.Join(q["_type"], ","), q.Get("_outputFormat")
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		params, err := fjson.Parse(body)
		if err != nil || params.Get("resourceType").String() != "Parameters" {
			writeOutcome(w, http.StatusBadRequest, "invalid", "expected a Parameters body")
			return
		}
		var types []string
		for _, p := range items(params.Get("parameter")) {
			switch p.Get("name").String() {
			case "patient":
				ref := p.Get("valueReference").Get("reference").String()
				pid, ok := strings.CutPrefix(ref, "Patient/")
				if !ok {
					writeOutcome(w, http.StatusBadRequest, "invalid", "patient must reference a Patient")
					return
				}
				patients = append(patients, pid)
			case "_type":
				types = append(types, p.Get("valueString").String())
			case "_since":
				since = p.Get("valueInstant").String()
			case "_outputFormat":
				format = p.Get("valueString").String()
			}
		}
		if len(types) > 0 {
			typeArg = strings.Join(types, ",")
		}
	}
	switch format {
	case "", "application/fhir+ndjson", "application/ndjson", "ndjson":
	default:
		writeOutcome(w, http.StatusBadRequest, "not-supported", "unsupported _outputFormat")
		return
	}
	switch {
	case path == "Patient/$export":
		if len(patients) == 0 {
			patients = u.data.patients
		}
	case path == "Group/"+GroupID+"/$export":
		if len(patients) > 0 {
			writeOutcome(w, http.StatusBadRequest, "invalid", "patient is for Patient-level exports")
			return
		}
		patients = u.data.patients
	default:
		writeOutcome(w, http.StatusNotFound, "not-found", "unknown export endpoint or group")
		return
	}
	seen := map[string]bool{}
	var keys []string
	for _, pid := range patients {
		rec := u.data.record(pid)
		if rec == nil {
			writeOutcome(w, http.StatusNotFound, "not-found", "no such patient")
			return
		}
		for _, k := range rec {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	keys = u.filter(keys, since, typeArg)

	u.mu.Lock()
	u.jobSeq++
	job := &exportJob{id: strconv.Itoa(u.jobSeq), request: u.srv.URL + r.URL.RequestURI(), created: u.Clock.Now()}
	u.jobs[job.id] = job
	u.mu.Unlock()
	if n := u.opts.Synthetic; n > 0 {
		for from := 0; from < n; from += syntheticPerFile {
			job.files = append(job.files, &exportFile{typ: "Observation", name: fmt.Sprintf("Observation-%d.ndjson", from/syntheticPerFile),
				from: from, to: min(from+syntheticPerFile, n)})
		}
	} else {
		byType := map[string]*exportFile{}
		for _, k := range keys {
			t, _, _ := strings.Cut(k, "/")
			f := byType[t]
			if f == nil {
				f = &exportFile{typ: t, name: t + ".ndjson"}
				byType[t] = f
				job.files = append(job.files, f)
			}
			f.keys = append(f.keys, k)
		}
	}
	w.Header().Set("Content-Location", u.srv.URL+"/jobs/"+job.id)
	writeOutcome(w, http.StatusAccepted, "informational", "export started")
}

func (u *Upstream) job(r *http.Request, prefix string) *exportJob {
	id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, prefix), "/")
	u.mu.Lock()
	defer u.mu.Unlock()
	j := u.jobs[id]
	if j == nil || j.canceled {
		return nil
	}
	return j
}

// status answers a poll: 202 with X-Progress and Retry-After for the first
// ExportPolls polls, then the manifest.
func (u *Upstream) status(w http.ResponseWriter, r *http.Request) {
	j := u.job(r, "/jobs/")
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such export job")
		return
	}
	u.mu.Lock()
	j.polls++
	polls := j.polls
	u.mu.Unlock()
	if polls <= u.opts.ExportPolls {
		w.Header().Set("X-Progress", fmt.Sprintf("%d%% complete", 100*polls/(u.opts.ExportPolls+1)))
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	type file struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count,omitempty"`
	}
	m := struct {
		TransactionTime     string `json:"transactionTime"`
		Request             string `json:"request"`
		RequiresAccessToken bool   `json:"requiresAccessToken"`
		Output              []file `json:"output"`
		Error               []file `json:"error"`
	}{
		TransactionTime: fhir.FormatInstant(j.created), Request: j.request,
		RequiresAccessToken: !u.opts.OpenFiles, Output: []file{}, Error: []file{},
	}
	for _, f := range j.files {
		m.Output = append(m.Output, file{Type: f.typ, URL: u.srv.URL + "/files/" + j.id + "/" + f.name, Count: f.count()})
	}
	if u.opts.ErrorFile {
		m.Error = append(m.Error, file{Type: "OperationOutcome", URL: u.srv.URL + "/files/" + j.id + "/errors.ndjson"})
	}
	body, _ := json.Marshal(m)
	w.Header().Set("Expires", u.Clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	writeJSON(w, http.StatusOK, "application/json", body)
}

// cancel deletes a job.
func (u *Upstream) cancel(w http.ResponseWriter, r *http.Request) {
	j := u.job(r, "/jobs/")
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such export job")
		return
	}
	u.mu.Lock()
	j.canceled = true
	u.canceled++
	u.mu.Unlock()
	writeOutcome(w, http.StatusAccepted, "informational", "export deleted")
}

// ErrorLine is the OperationOutcome line of the error file.
const ErrorLine = `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","details":{"text":"one Observation could not be exported"}}]}`

// file streams an NDJSON file.
func (u *Upstream) file(w http.ResponseWriter, r *http.Request) {
	j := u.job(r, "/files/")
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such export job")
		return
	}
	name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	var f *exportFile
	if i := slices.IndexFunc(j.files, func(f *exportFile) bool { return f.name == name }); i >= 0 {
		f = j.files[i]
	} else if name != "errors.ndjson" || !u.opts.ErrorFile {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such file")
		return
	}
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	var out io.Writer = w
	if u.opts.GzipFiles && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		defer zw.Close()
		out = zw
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	defer bw.Flush()
	w.WriteHeader(http.StatusOK)
	if f == nil {
		bw.WriteString(ErrorLine + "\n")
		return
	}
	if f.keys == nil {
		prefix, suffix := u.syntheticTemplate()
		for i := f.from; i < f.to; i++ {
			bw.Write(prefix)
			bw.WriteString("syn-" + strconv.Itoa(i))
			bw.Write(suffix)
			bw.WriteByte('\n')
		}
		return
	}
	for _, k := range f.keys {
		bw.Write(u.data.byKey[k].res.Raw)
		bw.WriteByte('\n')
	}
}

// syntheticTemplate splits the first stored Observation around its id.
func (u *Upstream) syntheticTemplate() (prefix, suffix []byte) {
	for _, k := range u.data.order {
		if strings.HasPrefix(k, "Observation/") {
			raw := u.data.byKey[k].res.Raw
			idLit := []byte(`"id":` + strconv.Quote(u.data.byKey[k].res.ID))
			i := bytes.Index(raw, idLit)
			return slices.Clone(raw[:i+6]), slices.Clone(raw[i+len(idLit)-1:])
		}
	}
	panic("adaptertest: no Observation to generate from")
}
