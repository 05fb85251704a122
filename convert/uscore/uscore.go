// Package uscore builds the US Core race and ethnicity extensions of a
// Patient (US Core 3.1+, CDC Race & Ethnicity code system), shared by the
// C-CDA and HL7 v2 converters.
package uscore

import "strings"

// Extension URLs.
const (
	RaceURL      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	EthnicityURL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
	// CDCSystem is the CDC Race & Ethnicity code system (OID 2.16.840.1.113883.6.238).
	CDCSystem = "urn:oid:2.16.840.1.113883.6.238"
	// NullFlavorSystem codes UNK and ASKU.
	NullFlavorSystem = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
)

// Coding is one race or ethnicity code.
type Coding struct {
	System, Code, Display string
}

// ombRace and ombEthnicity are the OMB categories; any other CDC code is
// a detailed one.
var (
	ombRace = map[string]string{
		"1002-5": "American Indian or Alaska Native", "2028-9": "Asian", "2054-5": "Black or African American",
		"2076-8": "Native Hawaiian or Other Pacific Islander", "2106-3": "White",
	}
	ombEthnicity = map[string]string{"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
)

// Race returns the us-core-race extension of codes (nil when none is a
// CDC or null-flavor code and text is empty).
func Race(codes []Coding, text string) map[string]any { return build(RaceURL, ombRace, codes, text) }

// Ethnicity returns the us-core-ethnicity extension.
func Ethnicity(codes []Coding, text string) map[string]any {
	return build(EthnicityURL, ombEthnicity, codes, text)
}

func build(url string, omb map[string]string, codes []Coding, text string) map[string]any {
	var subs []any
	var names []string
	seen := map[string]bool{}
	for _, c := range codes {
		if c.Code == "" || seen[c.System+"|"+c.Code] {
			continue
		}
		seen[c.System+"|"+c.Code] = true
		part := ""
		switch {
		case c.System == CDCSystem && omb[c.Code] != "":
			part = "ombCategory"
			if c.Display == "" {
				c.Display = omb[c.Code]
			}
		case c.System == CDCSystem:
			part = "detailed"
		case c.System == NullFlavorSystem && (c.Code == "UNK" || c.Code == "ASKU"):
			part = "ombCategory"
			if c.Display == "" {
				c.Display = map[string]string{"UNK": "Unknown", "ASKU": "Asked but no answer"}[c.Code]
			}
		default:
			continue
		}
		coding := map[string]any{"system": c.System, "code": c.Code}
		names = append(names, c.Code)
		if c.Display != "" {
			coding["display"] = c.Display
			names[len(names)-1] = c.Display
		}
		subs = append(subs, map[string]any{"url": part, "valueCoding": coding})
	}
	if text == "" {
		text = strings.Join(names, ", ")
	}
	if len(subs) == 0 && text == "" {
		return nil
	}
	// text is required
	subs = append(subs, map[string]any{"url": "text", "valueString": text})
	return map[string]any{"url": url, "extension": subs}
}
