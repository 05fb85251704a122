package hl7v2

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/validate"
)

// extraMessages cover message types and segments the shared samples do
// not have (SIU, ORM, OML, IAM, OBX value types, ED and RP, MDM text).
var extraMessages = []struct{ name, msg string }{
	{"SIU^S12", msh("SIU^S12^SIU_S12", "SIU1") +
		seg("SCH", map[int]string{1: "PL1^SCHED", 2: "FL9^SCHED", 7: "FOLLOWUP^Follow-up visit^HL70276", 8: "ROUTINE^Routine^HL70277", 9: "30", 10: "min",
			11: "^^30^20240315093000-0500^20240315100000-0500", 25: "Booked"}) +
		seg("NTE", map[int]string{1: "1", 3: "Bring the glucose diary"}) +
		patient +
		seg("RGS", map[int]string{1: "1", 2: "A"}) +
		seg("AIS", map[int]string{1: "1", 2: "A", 3: "99213^Office visit^C4", 4: "20240315093000-0500", 7: "30", 8: "min"}) +
		seg("AIG", map[int]string{1: "1", 2: "A", 3: "ROOM2^Exam room 2", 4: "ROOM^Room"}) +
		seg("AIL", map[int]string{1: "1", 2: "A", 3: "CLINIC^2^B"}) +
		seg("AIP", map[int]string{1: "1", 2: "A", 3: "1234^Smith^John^^^Dr", 4: "ATT^Attending"})},
	{"ORM^O01", msh("ORM^O01^ORM_O01", "ORM1") + patient +
		seg("PV1", map[int]string{1: "1", 2: "O", 3: "CLINIC"}) +
		seg("IN1", map[int]string{1: "1", 2: "PPO1^Gold PPO", 3: "INS7", 4: "Acme Health", 5: "1 Main St^^Springfield^IL^62701", 8: "G123", 9: "Acme Corp",
			12: "20240101", 13: "20241231", 16: "Jones^Ann", 17: "SEL", 18: "19700101"}) +
		seg("ORC", map[int]string{1: "NW", 2: "ORD100^EHR", 4: "GRP1^EHR", 7: "^^^^^R", 9: "20240301090000", 12: "5678^Brown^Lisa^^^Dr"}) +
		seg("OBR", map[int]string{1: "1", 2: "ORD100^EHR", 4: "24331-1^Lipid panel^LN", 7: "20240301090000", 16: "5678^Brown^Lisa^^^Dr", 31: "E78.5^Hyperlipidemia^I10"}) +
		seg("NTE", map[int]string{1: "1", 3: "Fasting sample please"}) +
		seg("DG1", map[int]string{1: "1", 2: "I10", 3: "E78.5^Hyperlipidemia^I10", 4: "Hyperlipidemia", 6: "W"}) +
		seg("OBX", map[int]string{1: "1", 2: "NM", 3: "3141-9^Body weight^LN", 5: "72.5", 6: "kg"})},
	{"OML^O21", msh("OML^O21^OML_O21", "OML1") + patient +
		seg("IAM", map[int]string{1: "1", 2: "DA", 3: "70618^Penicillin^RXNORM", 4: "SV", 5: "hives~wheeze", 6: "A", 7: "IAM77^EHR", 9: "AL", 11: "20100101", 13: "20240101", 17: "C"}) +
		seg("NTE", map[int]string{1: "1", 3: "Anaphylaxis in 2010"}) +
		seg("ORC", map[int]string{1: "NW", 2: "ORD200^EHR", 9: "20240301090000"}) +
		seg("TQ1", map[int]string{1: "1", 7: "20240302080000-0500", 9: "S"}) +
		seg("OBR", map[int]string{1: "1", 2: "ORD200^EHR", 4: "58410-2^CBC panel^LN"}) +
		seg("SPM", map[int]string{1: "1", 2: "SP1&EHR", 4: "119297000^Blood specimen^SCT", 17: "20240302081500-0500"})},
	{"ORU value types", msh("ORU^R01^ORU_R01", "ORU9") + patient +
		seg("OBR", map[int]string{1: "1", 3: "R9", 4: "11502-2^Lab report^LN", 7: "20240301090000"}) +
		obx(1, "NM", "8867-4^Heart rate^LN", "60~120", "/min^^UCUM", "50-100", "") +
		obx(2, "SN", "2345-7^Glucose^LN", ">^200", "mg/dL", "70-99", "H") +
		obx(3, "CWE", "94500-6^SARS-CoV-2 RNA^LN", "260373001^Detected^SCT", "", "", "") +
		obx(4, "ST", "8251-1^Service comment^LN", "Hemolysed~Repeat advised", "", "", "") +
		obx(5, "DT", "11778-8^Delivery date^LN", "20240601", "", "", "") +
		obx(6, "TM", "8302-2^Time^LN", "0930", "", "", "") +
		obx(7, "NR", "8480-6^Range^LN", "120^140", "mm[Hg]", "", "") +
		obx(8, "ED", "11502-2^Report^LN", "LAB^application^pdf^Base64^"+base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 tiny")), "", "", "") +
		obx(9, "RP", "18748-4^Imaging report^LN", "https://pacs.example.org/studies/1^PACS^image^jpeg", "", "", "") +
		seg("OBX", map[int]string{1: "10", 2: "TX", 3: "48767-8^Annotation^LN", 11: "X"})},
	{"MDM^T02 text", msh("MDM^T02^MDM_T02", "MDM9") +
		seg("EVN", map[int]string{1: "T02", 2: "20240301090000"}) + patient +
		seg("TXA", map[int]string{1: "1", 2: "DS", 3: "TX", 4: "20240301085000", 7: "20240301085500", 12: "DOC9^DICT", 17: "AU"}) +
		seg("OBX", map[int]string{1: "1", 2: "TX", 3: "11490-0^Discharge summary^LN", 5: "Discharged home in good condition.~Follow up in 2 weeks.", 11: "F"})},
}

const patient = "PID|1||MRN1^^^CITY^MR||Jones^Ann||19700101|F\r"

func msh(typ, control string) string {
	return "MSH|^~\\&|SEND|CITY|GW|GW|20240301090000||" + typ + "|" + control + "|P|2.5.1\r"
}

// seg builds a segment with its fields at their positions.
func seg(name string, fields map[int]string) string {
	n := 0
	for k := range fields {
		n = max(n, k)
	}
	f := make([]string, n+1)
	f[0] = name
	for k, v := range fields {
		f[k] = v
	}
	return strings.Join(f, "|") + "\r"
}

func obx(set int, typ, code, value, unit, rng, flag string) string {
	return seg("OBX", map[int]string{1: fmt.Sprint(set), 2: typ, 3: code, 5: value, 6: unit, 7: rng, 8: flag, 11: "F"})
}

func convertExtra(t *testing.T, name string) (*Result, map[string]map[string]any) {
	t.Helper()
	for _, e := range extraMessages {
		if e.name == name {
			_, res, err := ParseAndConvert([]byte(e.msg), Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Resources {
				for _, is := range validate.Validate(r) {
					if is.Severity == fhir.SeverityError {
						t.Errorf("%s: %s %v %s", r.Type, is.Details.Text, is.Expression, is.Diagnostics)
					}
				}
			}
			return res, resources(t, res)
		}
	}
	t.Fatalf("no extra message %s", name)
	return nil, nil
}

func ofType(rs map[string]map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, r := range rs {
		if r["resourceType"] == typ {
			out = append(out, r)
		}
	}
	return out
}

func TestSIU(t *testing.T) {
	_, rs := convertExtra(t, "SIU^S12")
	aps := ofType(rs, "Appointment")
	if len(aps) != 1 {
		t.Fatalf("%d Appointments", len(aps))
	}
	ap := aps[0]
	if ap["status"] != "booked" || ap["start"] != "2024-03-15T09:30:00-05:00" || ap["end"] != "2024-03-15T10:00:00-05:00" || ap["comment"] != "Bring the glucose diary" {
		t.Errorf("appointment %v", ap)
	}
	if !has(ap["serviceType"], "code", "99213") || !has(ap["appointmentType"], "code", "ROUTINE") || !has(ap["reasonCode"], "code", "FOLLOWUP") {
		t.Errorf("service, type or reason missing: %v", ap)
	}
	parts, _ := ap["participant"].([]any)
	if len(parts) != 4 || !contains(ap["participant"], "Patient/") || !contains(ap["participant"], "Exam room 2") || !contains(ap["participant"], "Practitioner/") {
		t.Errorf("participants %v", ap["participant"])
	}
}

func TestOrders(t *testing.T) {
	_, rs := convertExtra(t, "ORM^O01")
	srs := ofType(rs, "ServiceRequest")
	if len(srs) != 1 {
		t.Fatalf("%d ServiceRequests", len(srs))
	}
	sr := srs[0]
	if sr["status"] != "active" || sr["intent"] != "order" || !has(sr["code"], "code", "24331-1") || !has(sr["identifier"], "value", "ORD100") ||
		!contains(sr["requester"], "Practitioner/") || sr["priority"] != "routine" || !contains(sr["note"], "Fasting") || !has(sr["reasonCode"], "code", "E78.5") {
		t.Errorf("request %v", sr)
	}
	if !contains(sr["supportingInfo"], "Observation/") {
		t.Errorf("the order's observation is not its supporting information: %v", sr)
	}
	covs := ofType(rs, "Coverage")
	if len(covs) != 1 || !contains(covs[0]["payor"], "Acme Health") || !has(covs[0]["subscriber"], "reference", "Patient/"+strings.TrimPrefix(refOfAny(ofType(rs, "Patient")[0]), "Patient/")) ||
		!has(covs[0]["class"], "value", "G123") || !has(covs[0]["period"], "end", "2024-12-31") {
		t.Errorf("coverage %v", covs)
	}
	conds := ofType(rs, "Condition")
	if len(conds) != 1 || !has(conds[0]["code"], "code", "E78.5") {
		t.Errorf("conditions %v", conds)
	}

	_, rs = convertExtra(t, "OML^O21")
	al := ofType(rs, "AllergyIntolerance")
	if len(al) != 1 || al[0]["criticality"] != "high" || !contains(al[0]["reaction"], "wheeze") || al[0]["type"] != "allergy" ||
		!has(al[0]["verificationStatus"], "code", "confirmed") || !contains(al[0]["note"], "Anaphylaxis") || !has(al[0]["category"], "", "medication") {
		t.Errorf("allergy %v", al)
	}
	sr = ofType(rs, "ServiceRequest")[0]
	if sr["priority"] != "stat" || sr["occurrenceDateTime"] != "2024-03-02T08:00:00-05:00" || !contains(sr["specimen"], "Specimen/") {
		t.Errorf("request %v", sr)
	}
	sp := ofType(rs, "Specimen")
	if len(sp) != 1 || !has(sp[0]["type"], "code", "119297000") || !contains(sp[0]["collection"], "2024-03-02T08:15:00-05:00") {
		t.Errorf("specimen %v", sp)
	}
}

func refOfAny(r map[string]any) string { return r["resourceType"].(string) + "/" + r["id"].(string) }

// TestOBXValueTypes: every OBX value type, repeats as components, the
// encapsulated PDF as a Binary named by the Observation's attachment
// extension and the report's presentedForm, the reference pointer as an
// attachment URL, a cancelled result with its data-absent reason.
func TestOBXValueTypes(t *testing.T) {
	res, rs := convertExtra(t, "ORU value types")
	byCode := map[string]map[string]any{}
	for _, o := range ofType(rs, "Observation") {
		byCode[o["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)] = o
	}
	hr := byCode["8867-4"]
	if comps, _ := hr["component"].([]any); len(comps) != 2 || !has(comps[0], "value", "60") || !has(comps[1], "value", "120") || hr["valueQuantity"] != nil {
		t.Errorf("repeated NM: %v", hr)
	}
	if g := byCode["2345-7"]; !has(g["valueQuantity"], "comparator", ">") || !has(g["valueQuantity"], "value", "200") {
		t.Errorf("SN: %v", g)
	}
	if c := byCode["94500-6"]; !has(c["valueCodeableConcept"], "code", "260373001") {
		t.Errorf("CWE: %v", c)
	}
	if s := byCode["8251-1"]; s["valueString"] != "Hemolysed\nRepeat advised" {
		t.Errorf("repeated ST: %v", s["valueString"])
	}
	if d := byCode["11778-8"]; d["valueDateTime"] != "2024-06-01" {
		t.Errorf("DT: %v", d)
	}
	if tm := byCode["8302-2"]; tm["valueTime"] != "09:30:00" {
		t.Errorf("TM: %v", tm)
	}
	if r := byCode["8480-6"]; !has(r["valueRange"], "value", "120") || !has(r["valueRange"], "value", "140") {
		t.Errorf("NR: %v", r)
	}
	pdf := byCode["11502-2"]
	if !contains(pdf["extension"], "Binary/") || !contains(pdf["extension"], "application/pdf") {
		t.Fatalf("ED: %v", pdf)
	}
	var bin map[string]any
	for _, b := range ofType(rs, "Binary") {
		bin = b
	}
	if bin == nil || bin["data"] != base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 tiny")) || !has(pdf["extension"], "size", "13") {
		t.Errorf("the PDF's Binary %v", bin)
	}
	if dr := ofType(rs, "DiagnosticReport")[0]; !contains(dr["presentedForm"], "Binary/") {
		t.Errorf("the report does not present the PDF: %v", dr)
	}
	if img := byCode["18748-4"]; !contains(img["extension"], "https://pacs.example.org/studies/1") || !contains(img["extension"], "image/jpeg") {
		t.Errorf("RP: %v", img)
	}
	var cancelled bool
	for _, o := range ofType(rs, "Observation") {
		if o["status"] == "cancelled" && has(o["dataAbsentReason"], "code", "not-performed") {
			cancelled = true
		}
	}
	if !cancelled {
		t.Errorf("no cancelled result with its data-absent reason")
	}
	for _, a := range res.Segments {
		if a.NotConverted != "" {
			t.Errorf("%s not converted: %s", a.Where, a.NotConverted)
		}
	}
}

func TestMDMText(t *testing.T) {
	_, rs := convertExtra(t, "MDM^T02 text")
	docs := ofType(rs, "DocumentReference")
	if len(docs) != 1 || !has(docs[0]["type"], "code", "DS") || docs[0]["docStatus"] != "final" || !has(docs[0]["masterIdentifier"], "value", "DOC9") {
		t.Fatalf("document %v", docs)
	}
	bins := ofType(rs, "Binary")
	if len(bins) != 1 {
		t.Fatalf("%d Binaries", len(bins))
	}
	text, _ := base64.StdEncoding.DecodeString(bins[0]["data"].(string))
	if string(text) != "Discharged home in good condition.\nFollow up in 2 weeks." {
		t.Errorf("document text %q", text)
	}
}
