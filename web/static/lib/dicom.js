// A small DICOM viewer: reads a Part 10 file (uncompressed: implicit or
// explicit VR little endian) and draws its first frame on a canvas, with
// the file's own window (or the pixel range) and rescale. Compressed
// transfer syntaxes are not decoded: the app offers the file for download.
// Loaded only when a DICOM file is opened.

const IMPLICIT = '1.2.840.10008.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';
const longVR = new Set(['OB', 'OD', 'OF', 'OL', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'OV']);

export function parse(buf) {
  const dv = new DataView(buf);
  if (buf.byteLength < 132 || String.fromCharCode(...new Uint8Array(buf, 128, 4)) !== 'DICM') throw new Error('not a DICOM file');
  const tags = new Map();
  let pos = 132;
  let explicit = true;
  let syntax = EXPLICIT;
  const str = (o, n) => String.fromCharCode(...new Uint8Array(buf, o, n)).replace(/[\0 ]+$/, '');
  // read one element at p; returns the position after it
  const element = (p, depth) => {
    const group = dv.getUint16(p, true);
    const elem = dv.getUint16(p + 2, true);
    const meta = group === 0x0002;
    let vr = '';
    let len;
    let q = p + 4;
    if (group === 0xfffe) { // item, item or sequence delimiter
      len = dv.getUint32(q, true);
      return { group, elem, vr: 'item', len, value: q + 4 };
    }
    if (explicit || meta) {
      vr = str(q, 2);
      if (longVR.has(vr)) { len = dv.getUint32(q + 4, true); q += 8; } else { len = dv.getUint16(q + 2, true); q += 4; }
    } else {
      len = dv.getUint32(q, true);
      q += 4;
      if (group === 0x7fe0 && elem === 0x0010) vr = 'OW';
    }
    return { group, elem, vr, len, value: q, depth };
  };
  const skipUndefined = (p) => { // past the sequence delimiter of an undefined-length SQ or item list
    while (p + 8 <= buf.byteLength) {
      const e = element(p, 1);
      if (e.group === 0xfffe && e.elem === 0xe0dd) return e.value; // sequence delimitation
      if (e.group === 0xfffe && e.elem === 0xe000) { // item
        if (e.len === 0xffffffff) p = skipItem(e.value); else p = e.value + e.len;
        continue;
      }
      p = e.value + (e.len === 0xffffffff ? 0 : e.len);
    }
    return p;
  };
  const skipItem = (p) => {
    while (p + 8 <= buf.byteLength) {
      const e = element(p, 2);
      if (e.group === 0xfffe && e.elem === 0xe00d) return e.value; // item delimitation
      p = e.len === 0xffffffff ? skipUndefined(e.value) : e.value + e.len;
    }
    return p;
  };
  while (pos + 8 <= buf.byteLength) {
    const e = element(pos, 0);
    const key = ((e.group << 16) | e.elem) >>> 0;
    if (e.len === 0xffffffff) {
      if (key === 0x7fe00010) throw new Error('compressed pixel data');
      pos = skipUndefined(e.value);
      continue;
    }
    tags.set(key, e);
    pos = e.value + e.len;
    if (e.group === 0x0002 && (pos + 4 > buf.byteLength || dv.getUint16(pos, true) !== 0x0002)) {
      syntax = tags.has(0x00020010) ? str(tags.get(0x00020010).value, tags.get(0x00020010).len) : EXPLICIT;
      if (syntax !== IMPLICIT && syntax !== EXPLICIT) throw new Error('compressed or big-endian DICOM (' + syntax + ')');
      explicit = syntax === EXPLICIT;
    }
    if (key === 0x7fe00010) break;
  }
  const us = (k, d) => (tags.has(k) ? dv.getUint16(tags.get(k).value, true) : d);
  const num = (k, d) => {
    if (!tags.has(k)) return d;
    const v = parseFloat(str(tags.get(k).value, tags.get(k).len).split('\\')[0]);
    return Number.isFinite(v) ? v : d;
  };
  const px = tags.get(0x7fe00010);
  if (!px) throw new Error('no pixel data');
  return {
    rows: us(0x00280010, 0), cols: us(0x00280011, 0), bits: us(0x00280100, 16), signed: us(0x00280103, 0) === 1,
    samples: us(0x00280002, 1), photometric: tags.has(0x00280004) ? str(tags.get(0x00280004).value, tags.get(0x00280004).len) : 'MONOCHROME2',
    center: num(0x00281050, NaN), width: num(0x00281051, NaN), slope: num(0x00281053, 1), intercept: num(0x00281052, 0),
    pixels: px.value, length: px.len, dv,
  };
}

// draw renders the first frame of a parsed file on a new canvas.
export function draw(img) {
  const { rows, cols, bits, signed, samples, dv } = img;
  if (!rows || !cols || rows * cols > 50e6) throw new Error('unsupported image size');
  const canvas = document.createElement('canvas');
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext('2d');
  const out = ctx.createImageData(cols, rows);
  const n = rows * cols;
  if (samples === 3 && bits === 8) {
    for (let i = 0; i < n; i++) {
      out.data.set([dv.getUint8(img.pixels + 3 * i), dv.getUint8(img.pixels + 3 * i + 1), dv.getUint8(img.pixels + 3 * i + 2), 255], 4 * i);
    }
  } else {
    const step = bits / 8;
    if (step !== 1 && step !== 2) throw new Error(`unsupported ${bits}-bit pixels`);
    const vals = new Float32Array(n);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const o = img.pixels + i * step;
      const raw = step === 1 ? (signed ? dv.getInt8(o) : dv.getUint8(o)) : (signed ? dv.getInt16(o, true) : dv.getUint16(o, true));
      const v = raw * img.slope + img.intercept;
      vals[i] = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    let min = lo;
    let max = hi;
    if (Number.isFinite(img.center) && Number.isFinite(img.width) && img.width > 1) {
      min = img.center - img.width / 2;
      max = img.center + img.width / 2;
    }
    const span = max - min || 1;
    const invert = img.photometric === 'MONOCHROME1';
    for (let i = 0; i < n; i++) {
      let g = Math.round(((vals[i] - min) / span) * 255);
      g = g < 0 ? 0 : g > 255 ? 255 : g;
      if (invert) g = 255 - g;
      out.data[4 * i] = out.data[4 * i + 1] = out.data[4 * i + 2] = g;
      out.data[4 * i + 3] = 255;
    }
  }
  ctx.putImageData(out, 0, 0);
  return canvas;
}
