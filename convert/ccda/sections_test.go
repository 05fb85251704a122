package ccda

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/sharedtest"
)

// goalsAndConcerns is a Progress Note with the sections of the five
// document templates that no sample of ../shared/testdata has entries in:
// Goals (a goal with a target), Health Concerns (a concern act holding a
// problem observation), Assessment and Plan (a planned procedure),
// Interventions (one carried out) and Admission Medications, each with
// narrative.
const goalsAndConcerns = `<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <templateId root="2.16.840.1.113883.10.20.22.1.9" extension="2015-08-01"/>
 <id root="2.16.840.1.113883.19.5.99999.1" extension="goals-1"/>
 <code code="11506-3" codeSystem="2.16.840.1.113883.6.1" displayName="Progress note"/>
 <title>Progress note</title>
 <effectiveTime value="20240105101500-0500"/>
 <recordTarget><patientRole><id root="2.16.840.1.113883.19.5" extension="pt-7"/>
  <patient><name><given>Ada</given><family>Quill</family></name>
   <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19700304"/>
   <raceCode code="2106-3" codeSystem="2.16.840.1.113883.6.238" displayName="White"/>
   <sdtc:raceCode xmlns:sdtc="urn:hl7-org:sdtc" code="2108-9" codeSystem="2.16.840.1.113883.6.238" displayName="European"/>
   <ethnicGroupCode code="2186-5" codeSystem="2.16.840.1.113883.6.238" displayName="Not Hispanic or Latino"/>
  </patient></patientRole></recordTarget>
 <component><structuredBody>
  <component><section>
   <templateId root="2.16.840.1.113883.10.20.22.2.60"/>
   <code code="61146-7" codeSystem="2.16.840.1.113883.6.1" displayName="Goals"/>
   <title>Goals</title>
   <text><paragraph ID="goal1">Get HbA1c below 7 percent by June</paragraph></text>
   <entry><observation classCode="OBS" moodCode="GOL">
    <templateId root="2.16.840.1.113883.10.20.22.4.121"/>
    <id root="7d3b7c1a-2f0e-4e43-9b8a-1f3c0d2b9a11"/>
    <code code="4548-4" codeSystem="2.16.840.1.113883.6.1" displayName="Hemoglobin A1c"/>
    <text><reference value="#goal1"/></text>
    <statusCode code="active"/>
    <effectiveTime><low value="20240105"/><high value="20240630"/></effectiveTime>
    <value xsi:type="IVL_PQ"><high value="7" unit="%"/></value>
   </observation></entry>
  </section></component>
  <component><section>
   <templateId root="2.16.840.1.113883.10.20.22.2.58" extension="2015-08-01"/>
   <code code="75310-3" codeSystem="2.16.840.1.113883.6.1" displayName="Health concerns document"/>
   <title>Health Concerns</title>
   <text><paragraph ID="hc1">Worried about falls at home</paragraph></text>
   <entry><act classCode="ACT" moodCode="EVN">
    <templateId root="2.16.840.1.113883.10.20.22.4.132" extension="2015-08-01"/>
    <id root="0b8f4a43-5a52-4f6b-8c0e-0d9b51c7a2f1"/>
    <code code="75310-3" codeSystem="2.16.840.1.113883.6.1" displayName="Health Concern"/>
    <statusCode code="active"/>
    <entryRelationship typeCode="REFR"><observation classCode="OBS" moodCode="EVN">
     <templateId root="2.16.840.1.113883.10.20.22.4.4" extension="2015-08-01"/>
     <id root="4e1c2f7a-5b2d-4d9a-8f0e-3a7c1b2d9e55"/>
     <code code="75315-2" codeSystem="2.16.840.1.113883.6.1" displayName="Condition"/>
     <text><reference value="#hc1"/></text>
     <statusCode code="completed"/>
     <effectiveTime><low value="20231201"/></effectiveTime>
     <value xsi:type="CD" code="129839007" codeSystem="2.16.840.1.113883.6.96" displayName="At risk for falls"/>
    </observation></entryRelationship>
   </act></entry>
  </section></component>
 <component><section>
   <templateId root="2.16.840.1.113883.10.20.22.2.9"/>
   <code code="51847-2" codeSystem="2.16.840.1.113883.6.1" displayName="Assessment and plan"/>
   <title>Assessment and Plan</title>
   <text><paragraph ID="ap1">Colonoscopy in three months</paragraph></text>
   <entry><procedure classCode="PROC" moodCode="RQO">
    <templateId root="2.16.840.1.113883.10.20.22.4.41" extension="2014-06-09"/>
    <id root="9a6d1bac-17d3-4195-89a4-1121bc809b4d"/>
    <code code="73761001" codeSystem="2.16.840.1.113883.6.96" displayName="Colonoscopy"/>
    <text><reference value="#ap1"/></text>
    <statusCode code="active"/>
    <effectiveTime value="20240405"/>
   </procedure></entry>
  </section></component>
  <component><section>
   <templateId root="2.16.840.1.113883.10.20.21.2.3" extension="2015-08-01"/>
   <code code="62387-6" codeSystem="2.16.840.1.113883.6.1" displayName="Interventions provided"/>
   <title>Interventions</title>
   <text><paragraph ID="iv1">Smoking cessation counselling given</paragraph></text>
   <entry><act classCode="ACT" moodCode="EVN">
    <templateId root="2.16.840.1.113883.10.20.22.4.131" extension="2015-08-01"/>
    <id root="1f1c9d2a-8a0b-4c8e-9a51-6c9e2b1d7f3e"/>
    <code code="225323000" codeSystem="2.16.840.1.113883.6.96" displayName="Smoking cessation education"/>
    <text><reference value="#iv1"/></text>
    <statusCode code="completed"/>
    <effectiveTime value="20240105"/>
   </act></entry>
  </section></component>
  <component><section>
   <templateId root="2.16.840.1.113883.10.20.22.2.44" extension="2015-08-01"/>
   <code code="42346-7" codeSystem="2.16.840.1.113883.6.1" displayName="Medications on admission"/>
   <title>Admission Medications</title>
   <text><paragraph ID="am1">Amlodipine 5 mg daily</paragraph></text>
   <entry><act classCode="ACT" moodCode="EVN">
    <templateId root="2.16.840.1.113883.10.20.22.4.36" extension="2014-06-09"/>
    <code code="42346-7" codeSystem="2.16.840.1.113883.6.1" displayName="Medications on Admission"/>
    <statusCode code="active"/>
    <entryRelationship typeCode="SUBJ"><substanceAdministration classCode="SBADM" moodCode="EVN">
     <templateId root="2.16.840.1.113883.10.20.22.4.16" extension="2014-06-09"/>
     <id root="b2c4e1d8-3f5a-4e6b-9c7d-8e9f0a1b2c3d"/>
     <text><reference value="#am1"/></text>
     <statusCode code="active"/>
     <effectiveTime xsi:type="IVL_TS"><low value="20230101"/></effectiveTime>
     <consumable><manufacturedProduct classCode="MANU">
      <templateId root="2.16.840.1.113883.10.20.22.4.23" extension="2014-06-09"/>
      <manufacturedMaterial><code code="197361" codeSystem="2.16.840.1.113883.6.88" displayName="Amlodipine 5 MG Oral Tablet"/></manufacturedMaterial>
     </manufacturedProduct></consumable>
    </substanceAdministration></entryRelationship>
   </act></entry>
  </section></component>
 </structuredBody></component>
</ClinicalDocument>`

// TestSectionsWithoutSamples: a Goals section's goal becomes a Goal (its
// description, start, target measure, value and due date), a Health
// Concerns section's concern a Condition of category health-concern, an
// Assessment and Plan's planned procedure a ServiceRequest in the CarePlan,
// an intervention carried out a Procedure, an admission medication a
// MedicationStatement; all keep their narrative, are in the Composition's
// sections, and validate; race and ethnicity (including sdtc:raceCode) are
// the US Core extensions.
func TestSectionsWithoutSamples(t *testing.T) {
	res, err := Convert([]byte(goalsAndConcerns), Options{})
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string][]map[string]any{}
	raw := map[string]string{}
	v := validate.Default()
	for _, r := range res.Resources {
		var m map[string]any
		if err := json.Unmarshal(r.Raw, &m); err != nil {
			t.Fatal(err)
		}
		byType[r.Type] = append(byType[r.Type], m)
		raw[r.Type] += string(r.Raw)
		if is := v.ValidateJSON(r.Raw); validate.HasErrors(is) {
			t.Errorf("%s does not validate: %v", r.Type, is)
		}
	}
	for _, a := range res.Entries {
		if a.NotConverted != "" || len(a.Resources) == 0 {
			t.Errorf("%s not converted: %s", a.Where, a.NotConverted)
		}
	}
	if len(byType["Goal"]) != 1 {
		t.Fatalf("%d Goals", len(byType["Goal"]))
	}
	g := raw["Goal"]
	for _, want := range []string{`"lifecycleStatus":"active"`, `"startDate":"2024-01-05"`, `"code":"4548-4"`, `"dueDate":"2024-06-30"`, `"value":7`, `Get HbA1c below 7 percent by June`} {
		if !strings.Contains(g, want) {
			t.Errorf("Goal lacks %s: %s", want, g)
		}
	}
	var concern string
	for _, c := range byType["Condition"] {
		b, _ := json.Marshal(c)
		if strings.Contains(string(b), "health-concern") {
			concern = string(b)
		}
	}
	for _, want := range []string{`"code":"129839007"`, `"onsetDateTime":"2023-12-01"`, `Worried about falls at home`, `"code":"active"`} {
		if !strings.Contains(concern, want) {
			t.Errorf("health concern lacks %s: %s", want, concern)
		}
	}
	for _, c := range []struct{ typ, code, text string }{
		{"ServiceRequest", "73761001", "Colonoscopy in three months"},
		{"Procedure", "225323000", "Smoking cessation counselling given"},
		{"MedicationStatement", "197361", "Amlodipine 5 mg daily"},
	} {
		if r := raw[c.typ]; !strings.Contains(r, `"code":"`+c.code+`"`) || !strings.Contains(r, c.text) {
			t.Errorf("no %s with %s and its narrative %q: %s", c.typ, c.code, c.text, r)
		}
	}
	if cp := raw["CarePlan"]; !strings.Contains(cp, "ServiceRequest/") {
		t.Errorf("the planned colonoscopy is not an activity of the CarePlan: %s", cp)
	}
	comp := raw["Composition"]
	for _, want := range []string{`"code":"61146-7"`, `"code":"75310-3"`, `"code":"51847-2"`, `"code":"62387-6"`, `"code":"42346-7"`, "Goal/", "Condition/", "Procedure/", "MedicationStatement/"} {
		if !strings.Contains(comp, want) {
			t.Errorf("Composition lacks %s", want)
		}
	}
	p := raw["Patient"]
	for _, want := range []string{"us-core-race", `"code":"2106-3"`, `"code":"2108-9"`, "us-core-ethnicity", `"code":"2186-5"`} {
		if !strings.Contains(p, want) {
			t.Errorf("Patient lacks %s: %s", want, p)
		}
	}
}

// TestRaceEthnicitySamples: in every sample, each race and ethnicity code
// of the recordTarget (raceCode, sdtc:raceCode, ethnicGroupCode, read with
// the test's own XML reader) is in the Patient's US Core race or ethnicity
// extension, under ombCategory (the five OMB categories and the two
// ethnicities) or detailed.
func TestRaceEthnicitySamples(t *testing.T) {
	dir := sharedtest.Path(t, "ccda")
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	if len(files) == 0 {
		t.Skip("no C-CDA samples")
	}
	omb := map[string]bool{"1002-5": true, "2028-9": true, "2054-5": true, "2076-8": true, "2106-3": true, "2135-2": true, "2186-5": true}
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		root := readXML(t, data)
		pat := root.at("ClinicalDocument/recordTarget/patientRole/patient")
		if pat == nil {
			continue
		}
		res, err := Convert(data, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var patient map[string]any
		for _, r := range res.Resources {
			if r.Type == "Patient" {
				json.Unmarshal(r.Raw, &patient)
				break
			}
		}
		exts := map[string]map[string]bool{} // extension url -> codes under slice ("ombCategory:2106-3")
		for _, e := range asSlice(patient["extension"]) {
			em := e.(map[string]any)
			url, _ := em["url"].(string)
			exts[url] = map[string]bool{}
			for _, sub := range asSlice(em["extension"]) {
				sm := sub.(map[string]any)
				if c, ok := sm["valueCoding"].(map[string]any); ok {
					exts[url][sm["url"].(string)+":"+c["code"].(string)] = true
				}
			}
		}
		for _, c := range pat.Children {
			var url string
			switch c.Name {
			case "raceCode", "sdtc:raceCode":
				url = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
			case "ethnicGroupCode", "sdtc:ethnicGroupCode":
				url = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
			default:
				continue
			}
			code := c.Attrs["code"]
			if code == "" {
				continue // a nullFlavor
			}
			slice := "detailed"
			if omb[code] {
				slice = "ombCategory"
			}
			checked++
			if !exts[url][slice+":"+code] {
				t.Errorf("%s: %s %s is not the Patient's %s %s (%v)", filepath.Base(f), c.Name, code, url, slice, exts[url])
			}
		}
	}
	if checked == 0 {
		t.Fatal("no race or ethnicity code in the samples")
	}
	t.Logf("%d race and ethnicity codes checked", checked)
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
