package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
)

// Thumbnails are at most ThumbnailSize pixels on their longer side.
const ThumbnailSize = 160

// maxThumbPixels bounds the images decoded for a thumbnail (width times
// height), and so the memory one takes (a 40-megapixel photo is about
// 60 MB decoded); larger images are kept without a thumbnail.
const maxThumbPixels = 40_000_000

// thumbSem lets one thumbnail be made at a time, so that concurrent
// uploads do not multiply the memory decoding takes.
var thumbSem = make(chan struct{}, 1)

// thumbnail is a small picture of a file for its DocumentReference.
type thumbnail struct {
	contentType string
	data        []byte
	title       string
}

// makeThumbnail renders a JPEG or PNG image, or a PDF's first page, as a
// small image; open reads the file from its start. It returns nil and the
// reason when none can be made.
func makeThumbnail(ctx context.Context, mediaType string, open func() (io.ReadCloser, error), size int64) (*thumbnail, error) {
	select {
	case thumbSem <- struct{}{}:
		defer func() { <-thumbSem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	switch mediaType {
	case MediaJPEG, MediaPNG:
		return imageThumbnail(mediaType, rc)
	case MediaPDF:
		if size > maxPDFThumbBytes {
			return nil, fmt.Errorf("the PDF is larger than %d MB, the most a thumbnail is rendered for", maxPDFThumbBytes>>20)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxPDFThumbBytes+1))
		if err != nil {
			return nil, err
		}
		img, err := renderPDFPage(ctx, data, ThumbnailSize)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img); err != nil {
			return nil, err
		}
		return &thumbnail{contentType: MediaPNG, data: buf.Bytes(), title: "Thumbnail of the first page"}, nil
	}
	return nil, fmt.Errorf("no thumbnail for %s", mediaType)
}

// imageThumbnail scales a JPEG or PNG down (JPEG photos turned as their
// Exif orientation says) and encodes it as the original was.
func imageThumbnail(mediaType string, r io.Reader) (*thumbnail, error) {
	var head bytes.Buffer
	cfg, _, err := image.DecodeConfig(io.TeeReader(r, &head))
	if err != nil {
		return nil, fmt.Errorf("the image cannot be decoded: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxThumbPixels {
		return nil, fmt.Errorf("the image is larger than %d megapixels, the most a thumbnail is made for", maxThumbPixels/1_000_000)
	}
	orientation := 1
	if mediaType == MediaJPEG {
		orientation = exifOrientation(head.Bytes())
	}
	img, _, err := image.Decode(io.MultiReader(&head, r))
	if err != nil {
		return nil, fmt.Errorf("the image cannot be decoded: %w", err)
	}
	small := orient(scaleDown(img, ThumbnailSize), orientation)
	var buf bytes.Buffer
	t := &thumbnail{contentType: mediaType, title: "Thumbnail"}
	if mediaType == MediaJPEG {
		err = jpeg.Encode(&buf, small, &jpeg.Options{Quality: 80})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, small)
	}
	if err != nil {
		return nil, err
	}
	t.data = buf.Bytes()
	return t, nil
}

// scaleDown shrinks img so that its longer side is at most limit pixels,
// averaging the source pixels each thumbnail pixel covers (a box filter:
// no aliasing, whatever the factor). Smaller images are copied.
func scaleDown(img image.Image, limit int) *image.NRGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w > limit || h > limit {
		if w >= h {
			tw, th = limit, int((int64(h)*int64(limit)+int64(w)/2)/int64(w))
		} else {
			tw, th = int((int64(w)*int64(limit)+int64(h)/2)/int64(h)), limit
		}
	}
	tw, th = max(tw, 1), max(th, 1)
	// sums of premultiplied 16-bit channels per thumbnail pixel
	type acc struct{ r, g, b, a, n uint64 }
	sums := make([]acc, tw*th)
	xmap := make([]int, w)
	for x := range w {
		xmap[x] = x * tw / w
	}
	add := func(y, ty int, px func(x int) (r, g, b, a uint32)) {
		row := sums[ty*tw : (ty+1)*tw]
		for x := range w {
			r, g, bb, a := px(x)
			s := &row[xmap[x]]
			s.r += uint64(r)
			s.g += uint64(g)
			s.b += uint64(bb)
			s.a += uint64(a)
			s.n++
		}
	}
	for y := range h {
		ty := y * th / h
		switch src := img.(type) {
		case *image.YCbCr:
			add(y, ty, func(x int) (uint32, uint32, uint32, uint32) {
				yi := src.YOffset(b.Min.X+x, b.Min.Y+y)
				ci := src.COffset(b.Min.X+x, b.Min.Y+y)
				r, g, bb := color.YCbCrToRGB(src.Y[yi], src.Cb[ci], src.Cr[ci])
				return uint32(r) * 0x101, uint32(g) * 0x101, uint32(bb) * 0x101, 0xffff
			})
		case *image.Gray:
			add(y, ty, func(x int) (uint32, uint32, uint32, uint32) {
				v := uint32(src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y)]) * 0x101
				return v, v, v, 0xffff
			})
		case *image.NRGBA:
			add(y, ty, func(x int) (uint32, uint32, uint32, uint32) {
				p := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
				a := uint32(p[3]) * 0x101
				return uint32(p[0]) * a / 0xff, uint32(p[1]) * a / 0xff, uint32(p[2]) * a / 0xff, a
			})
		case *image.RGBA:
			add(y, ty, func(x int) (uint32, uint32, uint32, uint32) {
				p := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
				return uint32(p[0]) * 0x101, uint32(p[1]) * 0x101, uint32(p[2]) * 0x101, uint32(p[3]) * 0x101
			})
		default:
			add(y, ty, func(x int) (uint32, uint32, uint32, uint32) {
				return src.At(b.Min.X+x, b.Min.Y+y).RGBA()
			})
		}
	}
	out := image.NewNRGBA(image.Rect(0, 0, tw, th))
	for i, s := range sums {
		if s.n == 0 {
			continue
		}
		a := s.a / s.n
		p := out.Pix[i*4 : i*4+4]
		p[3] = uint8(a >> 8)
		if a == 0 {
			continue
		}
		// un-premultiply
		p[0] = uint8(min(s.r/s.n*0xffff/a, 0xffff) >> 8)
		p[1] = uint8(min(s.g/s.n*0xffff/a, 0xffff) >> 8)
		p[2] = uint8(min(s.b/s.n*0xffff/a, 0xffff) >> 8)
	}
	return out
}

// orient turns an image as an Exif orientation (1-8) says it is to be
// shown.
func orient(src *image.NRGBA, o int) *image.NRGBA {
	if o < 2 || o > 8 {
		return src
	}
	w, h := src.Bounds().Dx(), src.Bounds().Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewNRGBA(image.Rect(0, 0, dw, dh))
	for y := range h {
		for x := range w {
			var dx, dy int
			switch o {
			case 2: // mirrored
				dx, dy = w-1-x, y
			case 3: // turned 180°
				dx, dy = w-1-x, h-1-y
			case 4: // mirrored vertically
				dx, dy = x, h-1-y
			case 5: // transposed
				dx, dy = y, x
			case 6: // turned 90° clockwise to be shown
				dx, dy = h-1-y, x
			case 7: // transversed
				dx, dy = h-1-y, w-1-x
			case 8: // turned 90° counter-clockwise to be shown
				dx, dy = y, w-1-x
			}
			copy(dst.Pix[dst.PixOffset(dx, dy):dst.PixOffset(dx, dy)+4], src.Pix[src.PixOffset(x, y):src.PixOffset(x, y)+4])
		}
	}
	return dst
}

// exifOrientation reads the Orientation tag (0x0112) of a JPEG's Exif
// segment (APP1) from the bytes before its image data; 1 (as stored)
// when there is none.
func exifOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	i := 2
	for i+4 <= len(b) && b[i] == 0xFF {
		marker := b[i+1]
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if marker == 0xDA || n < 2 || i+2+n > len(b) {
			return 1 // start of scan, or a truncated segment
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) > 14 && string(seg[:6]) == "Exif\x00\x00" {
			if o, err := tiffOrientation(seg[6:]); err == nil {
				return o
			}
			return 1
		}
		i += 2 + n
	}
	return 1
}

func tiffOrientation(t []byte) (int, error) {
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0, errors.New("not TIFF")
	}
	off := int(bo.Uint32(t[4:]))
	if off+2 > len(t) {
		return 0, errors.New("short")
	}
	n := int(bo.Uint16(t[off:]))
	for k := range n {
		e := off + 2 + 12*k
		if e+12 > len(t) {
			break
		}
		if bo.Uint16(t[e:]) == 0x0112 {
			return int(bo.Uint16(t[e+8:])), nil
		}
	}
	return 1, nil
}
