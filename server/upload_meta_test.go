package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strings"
	"testing"
)

// onePagePDF is a PDF whose single page paints a black rectangle.
func onePagePDF() []byte {
	var b bytes.Buffer
	var offs []int
	obj := func(s string) {
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", len(offs), s)
	}
	b.WriteString("%PDF-1.4\n")
	obj("<< /Type /Catalog /Pages 2 0 R >>")
	obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
	obj("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 140] /Contents 4 0 R >>")
	content := "0 0 0 rg 10 10 80 60 re f"
	obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content))
	x := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, x)
	return b.Bytes()
}

func photoPNG(t *testing.T) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 400, 300))
	for y := range 300 {
		for x := range 400 {
			img.Set(x, y, color.NRGBA{uint8(x / 2), 90, uint8(y / 2), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func resourceOf(t *testing.T, bundle []byte, typ string) map[string]any {
	t.Helper()
	for _, e := range jsonMap(t, bundle)["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		if r["resourceType"] == typ {
			return r
		}
	}
	t.Fatalf("no %s in %.300s", typ, bundle)
	return nil
}

func compact(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUploadMetadataInPackage: $import of a file and POST /Binary take a title, a
// LOINC document type, a date and a specialty (query parameters or
// headers); the DocumentReference carries them and a thumbnail, and the
// second-opinion package names the document by them.
func TestUploadMetadataInPackage(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			f := newSOFixture(t, k)
			w := f.as("patientP", http.MethodPost, "/Patient/"+f.pid+"/$import?title=ECG%2C%2014%20March&type=11524-6&date=2025-03-14&specialty=cardiology",
				onePagePDF(), "Content-Type: application/pdf")
			mustStatus(t, w, http.StatusOK)
			doc := resourceOf(t, w.Body.Bytes(), "DocumentReference")
			for k, want := range map[string]string{
				"type":        `{"coding":[{"code":"11524-6","display":"EKG study","system":"http://loinc.org"}],"text":"EKG study"}`,
				"description": `"ECG, 14 March"`,
				"context":     `{"period":{"end":"2025-03-14","start":"2025-03-14"},"practiceSetting":{"coding":[{"code":"394579002","display":"Cardiology","system":"http://snomed.info/sct"}],"text":"Cardiology"}}`,
			} {
				if got := compact(t, doc[k]); got != want {
					t.Errorf("DocumentReference.%s = %s, want %s", k, got, want)
				}
			}
			content := doc["content"].([]any)
			if len(content) != 2 || content[1].(map[string]any)["attachment"].(map[string]any)["contentType"] != "image/png" {
				t.Errorf("no PNG thumbnail of the PDF's first page: %s", compact(t, content))
			}

			// POST /Binary with the metadata in headers, filed into the
			// patient's record
			w = f.as("patientP", http.MethodPost, "/Binary", photoPNG(t), "Content-Type: image/png",
				"X-Security-Context: Patient/"+f.pid, "X-Title: Rash, left arm", "X-Document-Type: 34109-9", "X-Document-Date: 2025-02-01T09:30:00+01:00")
			mustStatus(t, w, http.StatusCreated)
			bin := jsonMap(t, w.Body.Bytes())
			if bin["resourceType"] != "Binary" || !strings.Contains(w.Header().Get("Location"), "/Binary/") {
				t.Fatalf("answer %.300s, Location %s", w.Body.String(), w.Header().Get("Location"))
			}
			link := w.Header().Get("Link")
			i, j := strings.Index(link, "/DocumentReference/"), strings.Index(link, ">")
			if i < 0 || j < i || !strings.Contains(link, `rel="describedby"`) {
				t.Fatalf("Link %q", link)
			}
			photoDoc := jsonMap(t, f.getAs(t, "patientP", link[i+1:j]))
			if photoDoc["description"] != "Rash, left arm" || compact(t, photoDoc["type"].(map[string]any)["coding"]) != `[{"code":"34109-9","display":"Note","system":"http://loinc.org"}]` ||
				compact(t, photoDoc["context"]) != `{"period":{"end":"2025-02-01T09:30:00+01:00","start":"2025-02-01T09:30:00+01:00"}}` {
				t.Errorf("photo's DocumentReference: %s", compact(t, photoDoc))
			}
			if c := photoDoc["content"].([]any); len(c) != 2 || c[0].(map[string]any)["attachment"].(map[string]any)["url"] != "Binary/"+bin["id"].(string) {
				t.Errorf("photo's content: %s", compact(t, c))
			}
			// the same bytes again: 200, nothing new
			w = f.as("patientP", http.MethodPost, "/Binary", photoPNG(t), "Content-Type: image/png",
				"X-Security-Context: Patient/"+f.pid, "X-Title: Rash, left arm")
			mustStatus(t, w, http.StatusOK)

			// the package names the document by its type and title
			res := f.request(t, "patientP", soParams(f.pid, []string{"Organization/clinic"}, []string{f.c1}))
			pkg := string(f.getAs(t, "so1", res.packages[0]))
			if !strings.Contains(pkg, "EKG study: ECG, 14 March") {
				t.Errorf("the package does not name the uploaded ECG by its type and title")
			}
			if !strings.Contains(pkg, "14 Mar 2025") {
				t.Errorf("the package does not date the uploaded ECG by its date")
			}

			// what cannot be used is refused
			for _, c := range []struct {
				who, method, path string
				body              []byte
				hdr               []string
				want              int
			}{
				{"patientP", http.MethodPost, "/Patient/" + f.pid + "/$import?type=1234-5", onePagePDF(), []string{"Content-Type: application/pdf"}, http.StatusBadRequest},
				{"patientP", http.MethodPost, "/Patient/" + f.pid + "/$import?title=a&title=b", onePagePDF(), []string{"Content-Type: application/pdf"}, http.StatusBadRequest},
				{"patientP", http.MethodPost, "/Patient/" + f.pid + "/$import?date=yesterday", onePagePDF(), []string{"Content-Type: application/pdf"}, http.StatusBadRequest},
				{"patientP", http.MethodPost, "/Patient/" + f.pid + "/$import?title=Letter", []byte("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r"), []string{"Content-Type: x-application/hl7-v2+er7"}, http.StatusBadRequest},
				{"patientP", http.MethodPost, "/Binary", onePagePDF(), []string{"Content-Type: application/pdf", "X-Title: Letter", "X-Security-Context: Organization/clinic"}, http.StatusBadRequest},
				{"patientP", http.MethodPost, "/Binary", []byte("plain"), []string{"Content-Type: text/plain", "X-Title: Letter", "X-Security-Context: Patient/" + f.pid}, http.StatusUnsupportedMediaType},
				{"patientB", http.MethodPost, "/Binary", onePagePDF(), []string{"Content-Type: application/pdf", "X-Title: Letter", "X-Security-Context: Patient/" + f.pid}, http.StatusForbidden},
			} {
				if w := f.as(c.who, c.method, c.path, c.body, c.hdr...); w.Code != c.want {
					t.Errorf("%s %s %v: %d, want %d: %.300s", c.method, c.path, c.hdr, w.Code, c.want, w.Body.String())
				}
			}
		})
	}
}
