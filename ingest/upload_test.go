package ingest_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/storage"
)

// testPDF is a one-page PDF (200 x 100 points) whose lower left quarter
// is painted black and which says "ECG" in Helvetica: what its first
// page looks like is known.
func testPDF() []byte {
	var b bytes.Buffer
	var offs []int
	obj := func(s string) {
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", len(offs), s)
	}
	b.WriteString("%PDF-1.4\n")
	obj("<< /Type /Catalog /Pages 2 0 R >>")
	obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
	obj("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>")
	content := "0 0 0 rg 0 0 100 50 re f BT /F1 18 Tf 120 70 Td (ECG) Tj ET"
	obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
	x := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, x)
	return b.Bytes()
}

// testJPEG is a w x h photo, red on its left half and blue on its right,
// with an Exif segment giving orientation o (0: none).
func testJPEG(t *testing.T, w, h, o int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{220, 20, 20, 255}
			if x >= w/2 {
				c = color.RGBA{20, 20, 220, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if o == 0 {
		return b
	}
	// APP1: "Exif\0\0", a little-endian TIFF header, IFD0 with one entry
	var tiff bytes.Buffer
	tiff.WriteString("II*\x00")
	binary.Write(&tiff, binary.LittleEndian, uint32(8))
	binary.Write(&tiff, binary.LittleEndian, uint16(1))
	binary.Write(&tiff, binary.LittleEndian, []uint16{0x0112, 3})
	binary.Write(&tiff, binary.LittleEndian, uint32(1))
	binary.Write(&tiff, binary.LittleEndian, []uint16{uint16(o), 0})
	binary.Write(&tiff, binary.LittleEndian, uint32(0))
	seg := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	app1 := append([]byte{0xFF, 0xE1, byte((len(seg) + 2) >> 8), byte(len(seg) + 2)}, seg...)
	return append(append(append([]byte{}, b[:2]...), app1...), b[2:]...)
}

// docOf finds the DocumentReference of an import's result.
func docOf(t *testing.T, res *ingest.Result) *fjson.Value {
	t.Helper()
	for _, e := range res.Entries {
		if e.Resource.Type == "DocumentReference" {
			return e.Resource.Root()
		}
	}
	t.Fatal("no DocumentReference")
	return nil
}

// thumbOf decodes the thumbnail attachment of a DocumentReference, after
// checking its size and hash.
func thumbOf(t *testing.T, doc *fjson.Value) (image.Image, string) {
	t.Helper()
	content := doc.Get("content").Elems()
	if len(content) != 2 {
		t.Fatalf("%d content attachments, want the file and its thumbnail", len(content))
	}
	att := content[1].Get("attachment")
	if !strings.HasPrefix(att.Get("title").String(), "Thumbnail") {
		t.Errorf("thumbnail title %q", att.Get("title").String())
	}
	data, err := base64.StdEncoding.DecodeString(att.Get("data").String())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(data)
	if att.Get("size").Str != fmt.Sprint(len(data)) || att.Get("hash").String() != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("thumbnail size %s hash %s do not describe its %d bytes", att.Get("size").Str, att.Get("hash").String(), len(data))
	}
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if ct := att.Get("contentType").String(); ct != "image/"+format {
		t.Errorf("thumbnail contentType %s, data is %s", ct, format)
	}
	b := img.Bounds()
	if b.Dx() > ingest.ThumbnailSize || b.Dy() > ingest.ThumbnailSize || (b.Dx() != ingest.ThumbnailSize && b.Dy() != ingest.ThumbnailSize) {
		t.Errorf("thumbnail %dx%d, want %d on its longer side", b.Dx(), b.Dy(), ingest.ThumbnailSize)
	}
	return img, format
}

func near(c color.Color, r, g, b uint8) bool {
	cr, cg, cb, _ := c.RGBA()
	d := func(a uint32, w uint8) bool { x := int(a>>8) - int(w); return x > -60 && x < 60 }
	return d(cr, r) && d(cg, g) && d(cb, b)
}

// TestUploadMetadataAndPDFThumbnail: a PDF uploaded with a title, LOINC
// type, date and specialty is described by them, and its first page is
// rendered as a thumbnail that shows what the page holds.
func TestUploadMetadataAndPDFThumbnail(t *testing.T) {
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatient(t, st, "pat")
		im := &ingest.Importer{Store: st, Now: fixedNow, Specialties: func(s string) (ingest.Coding, bool) {
			if s == "cardiology" {
				return ingest.Coding{System: "http://snomed.info/sct", Code: "394579002", Display: "Cardiology"}, true
			}
			return ingest.Coding{}, false
		}}
		meta := ingest.FileMeta{Title: "ECG, 14 March", TypeCode: "11524-6", Date: "2025-03-14", Specialty: "cardiology"}
		res, err := im.ImportFileWith(context.Background(), "pat", ingest.MediaPDF, bytes.NewReader(testPDF()), meta, ingest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		doc := docOf(t, res)
		checks := map[string]string{
			"type":          `{"coding":[{"code":"11524-6","display":"EKG study","system":"http://loinc.org"}],"text":"EKG study"}`,
			"description":   `"ECG, 14 March"`,
			"context":       `{"period":{"end":"2025-03-14","start":"2025-03-14"},"practiceSetting":{"coding":[{"code":"394579002","display":"Cardiology","system":"http://snomed.info/sct"}],"text":"Cardiology"}}`,
			"content.title": `"ECG, 14 March"`,
		}
		for k, want := range checks {
			v := doc.Get(k)
			if k == "content.title" {
				v = doc.Get("content").Elems()[0].Get("attachment").Get("title")
			}
			if v == nil || string(v.Raw) != want {
				t.Errorf("%s = %s, want %s", k, rawOf(v), want)
			}
		}
		img, format := thumbOf(t, doc)
		if format != "png" {
			t.Errorf("PDF thumbnail is %s, want png", format)
		}
		b := img.Bounds() // 160 x 80: the page is 2:1
		if b.Dx() != 160 || b.Dy() != 80 {
			t.Fatalf("thumbnail %v, want 160x80", b)
		}
		if !near(img.At(20, 70), 0, 0, 0) || !near(img.At(60, 50), 0, 0, 0) {
			t.Error("the black lower left quarter of the page is not black in the thumbnail")
		}
		if !near(img.At(150, 75), 255, 255, 255) || !near(img.At(20, 10), 255, 255, 255) {
			t.Error("the blank parts of the page are not white in the thumbnail")
		}
		dark := 0
		for y := 5; y < 30; y++ {
			for x := 90; x < 160; x++ {
				if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
					dark++
				}
			}
		}
		if dark == 0 {
			t.Error("the text of the page is not in the thumbnail")
		}
		for _, e := range res.Entries {
			if errs := validateIssues(e.Resource); len(errs) > 0 {
				t.Errorf("%s does not validate: %v", e.Resource.Type, errs)
			}
		}

		// the same bytes again without metadata change nothing; with other
		// metadata, the DocumentReference is updated
		again, err := im.ImportFileWith(context.Background(), "pat", ingest.MediaPDF, bytes.NewReader(testPDF()), ingest.FileMeta{}, ingest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c, u, n := again.Counts(); c != 0 || u != 0 || n != 2 {
			t.Errorf("again: %d created, %d updated, %d unchanged", c, u, n)
		}
		retitled, err := im.ImportFileWith(context.Background(), "pat", ingest.MediaPDF, bytes.NewReader(testPDF()), ingest.FileMeta{Title: "Resting ECG"}, ingest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c, u, _ := retitled.Counts(); c != 0 || u != 1 {
			t.Errorf("retitled: %d created, %d updated", c, u)
		}
		d2 := docOf(t, retitled)
		if d2.Get("description").String() != "Resting ECG" || d2.Get("type").Get("text").String() != "EKG study" || len(d2.Get("content").Elems()) != 2 {
			t.Errorf("retitled document: %s", d2.Raw)
		}
	})
}

func rawOf(v *fjson.Value) string {
	if v == nil {
		return "(absent)"
	}
	return string(v.Raw)
}

// TestImageThumbnails: photos are scaled to the thumbnail size, turned as
// their Exif orientation says, and kept in their format; PNG keeps
// transparency; an image too large to decode safely gets none, and says
// why.
func TestImageThumbnails(t *testing.T) {
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatient(t, st, "pat")
		im := &ingest.Importer{Store: st, Now: fixedNow}
		imp := func(ct string, b []byte) *ingest.Result {
			t.Helper()
			res, err := im.ImportFileWith(context.Background(), "pat", ct, bytes.NewReader(b), ingest.FileMeta{}, ingest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		// 640x480, red | blue, no orientation: 160x120, red on the left
		img, format := thumbOf(t, docOf(t, imp(ingest.MediaJPEG, testJPEG(t, 640, 480, 0))))
		if format != "jpeg" || img.Bounds().Dx() != 160 || img.Bounds().Dy() != 120 {
			t.Fatalf("JPEG thumbnail %s %v", format, img.Bounds())
		}
		if !near(img.At(20, 60), 220, 20, 20) || !near(img.At(140, 60), 20, 20, 220) {
			t.Error("JPEG thumbnail colours are not where the photo has them")
		}
		// orientation 6 (to be turned 90° clockwise): 120x160, red on top
		img, _ = thumbOf(t, docOf(t, imp(ingest.MediaJPEG, testJPEG(t, 640, 480, 6))))
		if img.Bounds().Dx() != 120 || img.Bounds().Dy() != 160 {
			t.Fatalf("turned thumbnail %v, want 120x160", img.Bounds())
		}
		if !near(img.At(60, 20), 220, 20, 20) || !near(img.At(60, 140), 20, 20, 220) {
			t.Error("the Exif orientation was not applied")
		}
		// a PNG with a transparent half
		src := image.NewNRGBA(image.Rect(0, 0, 320, 100))
		for y := range 100 {
			for x := range 320 {
				if x < 160 {
					src.Set(x, y, color.NRGBA{0, 160, 0, 255})
				}
			}
		}
		var pb bytes.Buffer
		if err := png.Encode(&pb, src); err != nil {
			t.Fatal(err)
		}
		img, format = thumbOf(t, docOf(t, imp(ingest.MediaPNG, pb.Bytes())))
		if format != "png" || img.Bounds().Dx() != 160 || img.Bounds().Dy() != 50 {
			t.Fatalf("PNG thumbnail %s %v", format, img.Bounds())
		}
		if _, _, _, a := img.At(150, 25).RGBA(); a != 0 {
			t.Error("transparency lost")
		}
		if !near(img.At(10, 25), 0, 160, 0) {
			t.Error("PNG colour lost")
		}
		// a PNG whose header claims 20000 x 20000 pixels
		var huge bytes.Buffer
		huge.Write([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})
		ihdr := []byte("IHDR\x00\x00\x4e\x20\x00\x00\x4e\x20\x08\x06\x00\x00\x00")
		binary.Write(&huge, binary.BigEndian, uint32(13))
		huge.Write(ihdr)
		binary.Write(&huge, binary.BigEndian, crc32IEEE(ihdr))
		res := imp(ingest.MediaPNG, huge.Bytes())
		if n := len(docOf(t, res).Get("content").Elems()); n != 1 {
			t.Errorf("%d content attachments for an image too large to decode", n)
		}
		if !strings.Contains(string(res.Outcome().JSON()), "no thumbnail") {
			t.Errorf("the outcome does not say why there is no thumbnail: %s", string(res.Outcome().JSON()))
		}
	})
}

// TestUploadMetadataRejected: metadata that cannot be used is refused
// with the field named, and nothing is stored.
func TestUploadMetadataRejected(t *testing.T) {
	eachStore(t, func(t *testing.T, st storage.Store) {
		newPatient(t, st, "pat")
		im := &ingest.Importer{Store: st, Now: fixedNow}
		for _, c := range []struct {
			meta  ingest.FileMeta
			field string
		}{
			{ingest.FileMeta{TypeCode: "11524-5"}, "type"}, // wrong check digit
			{ingest.FileMeta{TypeSystem: "http://loinc.org", TypeCode: "1234"}, "type"},
			{ingest.FileMeta{TypeSystem: "types", TypeCode: "scan"}, "type"},
			{ingest.FileMeta{Date: "14/03/2025"}, "date"},
			{ingest.FileMeta{Date: "2025-03-14T10:00:00"}, "date"}, // a time needs its zone
			{ingest.FileMeta{Title: "a\x00b"}, "title"},
			{ingest.FileMeta{Title: strings.Repeat("x", 501)}, "title"},
			{ingest.FileMeta{Specialty: "heart stuff"}, "specialty"},
			{ingest.FileMeta{Specialty: "cardiology"}, "specialty"}, // no Specialties hook here
		} {
			_, err := im.ImportFileWith(context.Background(), "pat", ingest.MediaPDF, bytes.NewReader(testPDF()), c.meta, ingest.Options{})
			if !errors.Is(err, ingest.ErrInvalidMeta) || !strings.Contains(err.Error(), c.field) {
				t.Errorf("%+v: %v, want ErrInvalidMeta naming %s", c.meta, err, c.field)
			}
		}
		if n := len(everything(t, st, "pat")["DocumentReference"]); n != 0 {
			t.Errorf("%d DocumentReferences stored", n)
		}
	})
}

func crc32IEEE(b []byte) uint32 {
	// the PNG CRC, computed here so the test needs nothing else
	var table [256]uint32
	for i := range table {
		c := uint32(i)
		for range 8 {
			if c&1 == 1 {
				c = 0xEDB88320 ^ (c >> 1)
			} else {
				c >>= 1
			}
		}
		table[i] = c
	}
	c := ^uint32(0)
	for _, x := range b {
		c = table[byte(c)^x] ^ (c >> 8)
	}
	return ^c
}
