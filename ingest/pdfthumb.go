package ingest

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"
	"time"

	"github.com/klippa-app/go-pdfium"
	"github.com/klippa-app/go-pdfium/requests"
	"github.com/klippa-app/go-pdfium/webassembly"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// PDF pages are rendered by PDFium compiled to WebAssembly and run by
// wazero's interpreter: pure Go (no cgo, no program outside the gateway),
// and a sandbox for a file that comes from anyone: the module sees no file
// system, its memory is capped, and a render that takes too long is
// stopped. The interpreter starts in about a second, where wazero's
// compiler takes over ten to translate PDFium; a thumbnail is one small
// render, for which the interpreter is fast enough.
const (
	// maxPDFThumbBytes: larger PDFs get no thumbnail.
	maxPDFThumbBytes = 32 << 20
	// pdfMemoryPages caps the module's memory (64 KiB pages: 512 MiB).
	pdfMemoryPages = 8192
	// pdfRenderTimeout stops a render (a hostile or pathological page).
	pdfRenderTimeout = 20 * time.Second
)

var pdfPool = sync.OnceValues(func() (pdfium.Pool, error) {
	return webassembly.Init(webassembly.Config{
		MinIdle: 0, MaxIdle: 1, MaxTotal: 1,
		// no file system for PDFium: documents are handed over as bytes
		FSConfig: wazero.NewFSConfig(),
		RuntimeConfig: wazero.NewRuntimeConfigInterpreter().
			WithCoreFeatures(api.CoreFeaturesV2 | experimental.CoreFeaturesExceptionHandling).
			WithMemoryLimitPages(pdfMemoryPages).
			WithCloseOnContextDone(true),
		Stdout: io.Discard, Stderr: io.Discard,
	})
})

// renderPDFPage renders the first page of a PDF to fit in a square of
// side pixels (white background).
func renderPDFPage(ctx context.Context, data []byte, side int) (image.Image, error) {
	pool, err := pdfPool()
	if err != nil {
		return nil, fmt.Errorf("the PDF renderer could not start: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, pdfRenderTimeout)
	defer cancel()
	inst, err := pool.GetInstanceWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("the PDF renderer is busy: %w", err)
	}
	type result struct {
		img image.Image
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("the PDF renderer failed: %v", p)}
			}
		}()
		img, err := renderFirstPage(inst, data, side)
		done <- result{img, err}
	}()
	select {
	case r := <-done:
		_ = inst.Close()
		return r.img, r.err
	case <-ctx.Done():
		// stops the module mid-render; the pool makes a new one next time
		_ = inst.Kill()
		return nil, errors.New("rendering the PDF's first page took too long")
	}
}

func renderFirstPage(inst pdfium.Pdfium, data []byte, side int) (image.Image, error) {
	doc, err := inst.OpenDocument(&requests.OpenDocument{File: &data})
	if err != nil {
		return nil, fmt.Errorf("the PDF cannot be opened: %w", err)
	}
	defer func() { _, _ = inst.FPDF_CloseDocument(&requests.FPDF_CloseDocument{Document: doc.Document}) }()
	n, err := inst.FPDF_GetPageCount(&requests.FPDF_GetPageCount{Document: doc.Document})
	if err != nil || n.PageCount < 1 {
		return nil, errors.New("the PDF has no page")
	}
	r, err := inst.RenderPageInPixels(&requests.RenderPageInPixels{
		Page:  requests.Page{ByIndex: &requests.PageByIndex{Document: doc.Document, Index: 0}},
		Width: side, Height: side,
	})
	if err != nil {
		return nil, fmt.Errorf("the PDF's first page cannot be rendered: %w", err)
	}
	defer r.Cleanup()
	// the rendering lives in the module's memory until Cleanup: copy it
	src, ok := r.Result.RenderedImage.(*image.RGBA)
	if !ok {
		return nil, errors.New("the PDF renderer answered an unexpected image")
	}
	out := image.NewNRGBA(src.Bounds())
	for y := src.Rect.Min.Y; y < src.Rect.Max.Y; y++ {
		for x := src.Rect.Min.X; x < src.Rect.Max.X; x++ {
			p := src.Pix[src.PixOffset(x, y):]
			q := out.Pix[out.PixOffset(x, y):]
			// PDFium renders transparent where the page paints nothing:
			// show it on white, as a viewer does
			a := uint32(p[3])
			q[0] = uint8((uint32(p[0])*a + 255*(255-a)) / 255)
			q[1] = uint8((uint32(p[1])*a + 255*(255-a)) / 255)
			q[2] = uint8((uint32(p[2])*a + 255*(255-a)) / 255)
			q[3] = 255
		}
	}
	return out, nil
}
