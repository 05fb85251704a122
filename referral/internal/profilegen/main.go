// Command profilegen writes the second-opinion Composition profile
// (referral/profiles/StructureDefinition-second-opinion.json): a
// StructureDefinition with a differential and a snapshot, the snapshot
// derived from R4 core's Composition in ../shared/testdata so that any
// validator can load it. Run by go generate in package referral; the
// output is deterministic.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

const (
	canonical   = "https://fhirgate.org/fhir/StructureDefinition/second-opinion"
	codeSystem  = "https://fhirgate.org/fhir/CodeSystem/second-opinion"
	core        = "http://hl7.org/fhir/StructureDefinition/"
	loinc       = "http://loinc.org"
	consultNote = "11488-4"
)

// slice is one section of the opinion.
type slice struct {
	name     string
	min      int
	max      string
	entries  []string // target types of section.entry; none: narrative only
	entryMin int
	entryMax string
	short    string
}

var slices = []slice{
	{"question", 1, "1", nil, 0, "0", "The question answered (narrative)"},
	{"agreement", 1, "1", []string{"Observation"}, 1, "1", "Agreement with the current diagnosis: one Observation (code diagnosis-agreement)"},
	{"alternatives", 0, "1", []string{"Condition"}, 0, "*", "Alternative diagnoses, coded (SNOMED CT, ICD-10) where possible"},
	{"plan", 1, "1", []string{"ServiceRequest", "MedicationRequest", "CarePlan"}, 0, "*", "Recommended plan"},
	{"tests", 0, "1", []string{"ServiceRequest"}, 0, "*", "Further tests, coded (LOINC, SNOMED CT) where possible"},
	{"urgency", 1, "1", []string{"Observation"}, 1, "1", "Urgency: one Observation (code urgency) valued with a request priority"},
	{"comment", 0, "1", nil, 0, "0", "Free text"},
}

func main() {
	testdata := flag.String("testdata", "", "the shared testdata directory")
	out := flag.String("out", "", "the file to write")
	flag.Parse()
	if *testdata == "" || *out == "" {
		log.Fatal("profilegen: -testdata and -out are required")
	}
	base, err := composition(filepath.Join(*testdata, "fhir-r4-definitions", "profiles-resources.assembled.json"))
	if err != nil {
		log.Fatal(err)
	}
	sd, err := build(base)
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(sd); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}

// composition reads R4 core's Composition StructureDefinition.
func composition(file string) (map[string]any, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.UseNumber()
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := dec.Decode(&b); err != nil {
		return nil, err
	}
	for _, e := range b.Entry {
		if e.Resource["resourceType"] == "StructureDefinition" && e.Resource["id"] == "Composition" {
			return e.Resource, nil
		}
	}
	return nil, fmt.Errorf("%s has no Composition StructureDefinition", file)
}

func clone(v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	_ = dec.Decode(&out)
	return out
}

func ref(targets ...string) []any {
	var tp []any
	for _, t := range targets {
		tp = append(tp, core+t)
	}
	return []any{map[string]any{"code": "Reference", "targetProfile": tp}}
}

func pattern(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

// build derives the profile: the core snapshot with the opinion's
// constraints, and a differential of exactly those.
func build(base map[string]any) (map[string]any, error) {
	snap, _ := base["snapshot"].(map[string]any)["element"].([]any)
	if len(snap) == 0 {
		return nil, fmt.Errorf("the core Composition has no snapshot")
	}
	byID := map[string]map[string]any{}
	for _, e := range snap {
		el := e.(map[string]any)
		byID[el["id"].(string)] = el
	}
	var diff []map[string]any
	// constrain changes a core element and records the change in the
	// differential
	constrain := func(id string, set map[string]any) {
		el := byID[id]
		if el == nil {
			log.Fatalf("profilegen: no element %s", id)
		}
		d := map[string]any{"id": id, "path": el["path"]}
		for k, v := range set {
			el[k], d[k] = v, v
		}
		diff = append(diff, d)
	}
	constrain("Composition", map[string]any{"short": "A second opinion on a referral", "definition": "A specialist's structured second opinion: the question answered, agreement with the current diagnosis, alternative diagnoses, recommended plan, further tests, urgency and free text, naming the referral Task it answers and the package it reviewed, attested (signed) by the practitioner."})
	constrain("Composition.status", map[string]any{"short": "preliminary (an interim report) | final | amended"})
	constrain("Composition.type", map[string]any{"patternCodeableConcept": pattern(loinc, consultNote)})
	constrain("Composition.subject", map[string]any{"min": 1, "type": ref("Patient")})
	constrain("Composition.author", map[string]any{"type": ref("Practitioner", "PractitionerRole", "Organization")})
	constrain("Composition.attester", map[string]any{"min": 1, "short": "The practitioner who signs the opinion"})
	constrain("Composition.attester.mode", map[string]any{"fixedCode": "legal"})
	constrain("Composition.attester.time", map[string]any{"min": 1})
	constrain("Composition.attester.party", map[string]any{"min": 1, "type": ref("Practitioner", "PractitionerRole")})
	constrain("Composition.event", map[string]any{"min": 1, "max": "1", "short": "The second-opinion service: detail names the referral Task answered and the package reviewed"})
	constrain("Composition.event.detail", map[string]any{"min": 2, "type": ref("Task", "Bundle")})
	minSections := 0
	for _, s := range slices {
		minSections += s.min
	}
	constrain("Composition.section", map[string]any{
		"min": minSections,
		"slicing": map[string]any{
			"discriminator": []any{map[string]any{"type": "pattern", "path": "code"}},
			"description":   "The sections of the opinion, by code",
			"ordered":       false, "rules": "open",
		},
	})
	constrain("Composition.section.code", map[string]any{"min": 1})
	// the slices: each a copy of section and its children
	var children []map[string]any
	for _, e := range snap {
		el := e.(map[string]any)
		if strings.HasPrefix(el["id"].(string), "Composition.section.") {
			children = append(children, el)
		}
	}
	var sliced []any
	for _, s := range slices {
		sid := "Composition.section:" + s.name
		head := clone(byID["Composition.section"])
		delete(head, "slicing")
		head["id"], head["sliceName"], head["min"], head["max"], head["short"] = sid, s.name, s.min, s.max, s.short
		sliced = append(sliced, head)
		diff = append(diff, map[string]any{"id": sid, "path": "Composition.section", "sliceName": s.name, "min": s.min, "max": s.max, "short": s.short})
		for _, c := range children {
			cc := clone(c)
			rest := strings.TrimPrefix(c["id"].(string), "Composition.section.")
			cc["id"] = sid + "." + rest
			switch rest {
			case "code":
				cc["min"], cc["patternCodeableConcept"] = 1, pattern(codeSystem, s.name)
				diff = append(diff, map[string]any{"id": cc["id"], "path": cc["path"], "min": 1, "patternCodeableConcept": cc["patternCodeableConcept"]})
			case "entry":
				d := map[string]any{"id": cc["id"], "path": cc["path"], "min": s.entryMin, "max": s.entryMax}
				cc["min"], cc["max"] = s.entryMin, s.entryMax
				if len(s.entries) > 0 {
					cc["type"], d["type"] = ref(s.entries...), ref(s.entries...)
				}
				diff = append(diff, d)
			}
			sliced = append(sliced, cc)
		}
	}
	// the slices follow the sliced element's own children in the snapshot
	var out []any
	last := 0
	for i, e := range snap {
		if strings.HasPrefix(e.(map[string]any)["id"].(string), "Composition.section") {
			last = i
		}
	}
	out = append(out, snap[:last+1]...)
	out = append(out, sliced...)
	out = append(out, snap[last+1:]...)
	var d []any
	for _, x := range diff {
		d = append(d, x)
	}
	return map[string]any{
		"resourceType":   "StructureDefinition",
		"id":             "second-opinion",
		"url":            canonical,
		"version":        "1.0.0",
		"name":           "SecondOpinionComposition",
		"title":          "Second-opinion Composition",
		"status":         "active",
		"publisher":      "fhirgate",
		"description":    "The Composition of a specialist's second-opinion document (a document Bundle stored on the gateway and linked from the referral Task's output). Sections are told apart by code (" + codeSystem + "); the gateway also checks what a profile cannot say: the Task named in event.detail is a referral Task of the writer, the package named is that Task's input, the subject is the Task's patient, the attester is the practitioner who signed in, and each section's entries are in the Bundle and of the kinds listed.",
		"fhirVersion":    "4.0.1",
		"kind":           "resource",
		"abstract":       false,
		"type":           "Composition",
		"baseDefinition": core + "Composition",
		"derivation":     "constraint",
		"snapshot":       map[string]any{"element": out},
		"differential":   map[string]any{"element": d},
	}, nil
}
