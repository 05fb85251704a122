package server

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fjson"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
)

// Binary resources are in no R4 compartment: who may see one is decided by
// its securityContext (package release).

// binaryContentRead reports whether the request reads a Binary (or one
// of its versions): the reads that may answer with the content itself.
func binaryContentRead(c *gin.Context) bool {
	if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		return false
	}
	if c.Param("type") != "Binary" || strings.HasPrefix(c.Param("id"), "$") {
		return false
	}
	p := c.FullPath()
	return strings.HasSuffix(p, "/:type/:id") || strings.HasSuffix(p, "/:type/:id/_history/:vid")
}

// writeBinary answers a Binary read. With an Accept header that admits no
// FHIR format the content itself is sent, in the Binary's contentType (R4
// http.html#binary); otherwise the Binary resource. Content kept as a blob
// streams from the store either way.
func (s *Server) writeBinary(c *gin.Context, r *fhir.Resource) {
	versionHeaders(c, r)
	if notModified(c, r) {
		return
	}
	blobID, isBlob := storage.BlobOf(r)
	native := c.GetBool(ctxNative)
	if !native && !isBlob {
		s.writeJSON(c, http.StatusOK, r.Raw)
		return
	}
	var (
		content io.Reader
		size    int64 = -1
	)
	if isBlob {
		bs, ok := s.cfg.Store.(storage.Blobs)
		if !ok {
			s.fail(c, fmt.Errorf("Binary/%s names stored content but the store keeps none", r.ID))
			return
		}
		rc, info, err := bs.OpenBlob(c.Request.Context(), blobID)
		if err != nil {
			s.fail(c, fmt.Errorf("Binary/%s: its content: %w", r.ID, err))
			return
		}
		defer rc.Close()
		content, size = rc, info.Size
	} else {
		data, err := base64.StdEncoding.DecodeString(r.Root().Get("data").String())
		if err != nil {
			s.fail(c, fmt.Errorf("Binary/%s holds data that is not base64: %w", r.ID, err))
			return
		}
		content, size = bytes.NewReader(data), int64(len(data))
	}
	h := c.Writer.Header()
	if native {
		// content from patients and other sources: never let a browser
		// run it or guess another type for it
		h.Set("Content-Type", binaryMediaType(r.Root().Get("contentType").String()))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		if rs, ok := content.(io.ReadSeeker); ok {
			// Range requests (viewers of large scans, resumed downloads);
			// the conditional headers were answered above
			c.Request.Header.Del("If-None-Match")
			c.Request.Header.Del("If-Modified-Since")
			http.ServeContent(&rangeErrors{ResponseWriter: c.Writer, outcome: func(is fhir.Issue) []byte { return s.outcome(c, is).JSON() }}, c.Request, "", r.LastUpdated, rs)
			return
		}
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		c.Status(http.StatusOK)
		if c.Request.Method == http.MethodHead {
			return
		}
		c.Writer.WriteHeaderNow()
		if _, err := io.Copy(c.Writer, content); err != nil {
			s.log.Warn("Binary content interrupted", "binary", r.ID, "error", err.Error())
		}
		return
	}
	h.Set("Content-Type", ContentTypeFHIRJSON)
	c.Status(http.StatusOK)
	if c.Request.Method == http.MethodHead {
		return
	}
	var w io.Writer = c.Writer
	if acceptsGzip(c.Request) {
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		zw := gzipPool.Get().(*gzip.Writer)
		zw.Reset(c.Writer)
		defer func() {
			_ = zw.Close()
			gzipPool.Put(zw)
		}()
		w = zw
	}
	c.Writer.WriteHeaderNow()
	if err := storage.WriteInlined(w, r, content); err != nil {
		// the status line is out: all that is left is to stop
		s.log.Warn("Binary content interrupted", "binary", r.ID, "error", err.Error())
	}
}

// binaryMediaType is the Content-Type a Binary's content is sent with:
// its contentType when that is a well-formed media type, else
// application/octet-stream.
func binaryMediaType(ct string) string {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return "application/octet-stream"
	}
	if out := mime.FormatMediaType(mt, params); out != "" {
		return out
	}
	return "application/octet-stream"
}

// nativeContent reports whether a request body is content in its own
// media type rather than a FHIR resource.
func nativeContent(c *gin.Context) bool {
	ct := c.GetHeader("Content-Type")
	if ct == "" {
		return false // a body without a type is read as FHIR JSON
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false // requireJSONBody answers 415
	}
	switch mt {
	case "application/fhir+json", "application/json", "application/json+fhir", "text/json",
		"application/fhir+xml", "application/xml+fhir":
		return false
	}
	return true
}

// createBinaryNative answers POST /Binary whose body is the content itself
// (R4 http.html#binary): the Binary gets the request's Content-Type and the
// securityContext named by the X-Security-Context header, and its content
// streams into the store within server.maxUploadBytes.
func (s *Server) createBinaryNative(c *gin.Context) {
	if _, err := s.authorize(c, "create", "", "Binary"); err != nil {
		s.fail(c, err)
		return
	}
	if c.GetHeader("If-None-Exist") != "" {
		s.fail(c, fhir.Errorf(http.StatusBadRequest, "not-supported", nil, "a conditional create of a Binary sends the Binary resource (application/fhir+json), not its content"))
		return
	}
	if meta, err := fileMeta(c); err != nil || !meta.Empty() {
		if err != nil {
			s.fail(c, err)
		} else {
			s.fileBinary(c, meta) // a file for a patient's record (import.go)
		}
		return
	}
	mt, params, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	bin := []byte(`{"resourceType":"Binary","contentType":`)
	bin = fjson.AppendString(bin, mime.FormatMediaType(mt, params))
	if sc := strings.TrimSpace(c.GetHeader("X-Security-Context")); sc != "" {
		typ, id, ok := strings.Cut(sc, "/")
		if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
			s.fail(c, fhir.Errorf(http.StatusBadRequest, "value", []string{"Binary.securityContext"}, "X-Security-Context must be a reference such as Patient/123"))
			return
		}
		bin = append(bin, `,"securityContext":{"reference":`...)
		bin = fjson.AppendString(bin, typ+"/"+id)
		bin = append(bin, '}')
	}
	bin = append(bin, '}')
	res, err := fhir.Parse(bin)
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := s.checkWrite(c, res); err != nil {
		s.fail(c, err)
		return
	}
	if c.Request.ContentLength > s.cfg.MaxUploadBytes {
		s.fail(c, uploadTooLarge(s.cfg.MaxUploadBytes))
		return
	}
	body := &limitedBody{r: c.Request.Body, left: s.cfg.MaxUploadBytes, limit: s.cfg.MaxUploadBytes}
	ctx := c.Request.Context()
	if bs, ok := s.cfg.Store.(storage.Blobs); ok {
		info, err := bs.PutBlob(ctx, body)
		if err != nil {
			s.fail(c, err)
			return
		}
		if res, err = storage.BlobStub(res, info.ID); err != nil {
			s.fail(c, err)
			return
		}
	} else {
		// a store without blobs: the content goes into data, within the
		// body limit
		data, err := s.readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		withData := append(bin[:len(bin)-1:len(bin)-1], `,"data":`...)
		withData = fjson.AppendString(withData, base64.StdEncoding.EncodeToString(data))
		if res, err = fhir.Parse(append(withData, '}')); err != nil {
			s.fail(c, err)
			return
		}
	}
	res.ID = s.newID()
	out, err := s.cfg.Store.Create(ctx, res)
	if err != nil {
		s.fail(c, err)
		return
	}
	accessOf(c).resource = "Binary/" + out.ID
	c.Header("Location", s.location(c, out))
	s.writeResult(c, http.StatusCreated, out, "Binary/"+out.ID+" created")
}

// registerBinary states in the CapabilityStatement how Binary behaves.
func (s *Server) registerBinary() {
	s.AddCapabilities(func(cs *CapabilityStatement) {
		for i := range cs.Rest {
			for j := range cs.Rest[i].Resource {
				if r := &cs.Rest[i].Resource[j]; r.Type == "Binary" {
					r.Documentation = "read and vread with an Accept that admits no FHIR format answer the content itself in the Binary's contentType; " +
						"create with a non-FHIR Content-Type stores the body as the content, with the securityContext named by X-Security-Context; " +
						"with a title, type (LOINC), date or specialty (query parameters or X-Title, X-Document-Type, X-Document-Date, X-Specialty) and X-Security-Context naming a Patient, " +
						"a PDF, JPEG, PNG or DICOM file is filed into that patient's record as Patient/[id]/$import files it (DocumentReference in the Link header). " +
						"Content is streamed into and out of the store; search and history list Binaries holding uploaded files without their content " +
						"(_data carries the extension " + storage.BlobExtension + "). Access follows securityContext; a Binary without one is for system clients only."
				}
			}
		}
	})
}

// rangeErrors turns the plain-text 416 of http.ServeContent (a Range
// outside the content) into an OperationOutcome, as every error is.
type rangeErrors struct {
	http.ResponseWriter
	swallow bool
	outcome func(fhir.Issue) []byte
}

func (w *rangeErrors) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ContentTypeFHIRJSON)
	h.Del("Content-Security-Policy")
	body := w.outcome(fhir.Issue{Severity: fhir.SeverityError, Code: "value",
		Details: &fhir.IssueDetails{Text: "the Range asked for lies outside the content (see Content-Range for its size)"}})
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.ResponseWriter.WriteHeader(code)
	_, _ = w.ResponseWriter.Write(body)
	w.swallow = true
}

func (w *rangeErrors) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}
