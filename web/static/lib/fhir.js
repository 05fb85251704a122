// A small FHIR R4 client over fetch: JSON in and out, the user's bearer
// token on every request, OperationOutcomes turned into errors that say
// what the server said.

export class FhirError extends Error {
  constructor(status, message, outcome) {
    super(message);
    this.status = status;
    this.outcome = outcome;
  }
}

export class Client {
  constructor(base, token, onExpired) {
    this.base = base;
    this.token = token;
    this.onExpired = onExpired;
  }

  url(path) { return /^https?:/.test(path) ? path : this.base + '/' + path.replace(/^\//, ''); }

  async request(method, path, { body, headers = {}, raw = false } = {}) {
    const h = { Authorization: 'Bearer ' + this.token, Accept: 'application/fhir+json', ...headers };
    if (body !== undefined && !(body instanceof Blob) && typeof body !== 'string') {
      body = JSON.stringify(body);
      h['Content-Type'] = h['Content-Type'] || 'application/fhir+json';
    }
    const r = await fetch(this.url(path), { method, headers: h, body });
    if (r.status === 401 && this.onExpired) this.onExpired();
    if (raw) return r;
    if (!r.ok && r.status !== 202) throw await errorOf(r);
    const text = await r.text();
    return text ? JSON.parse(text) : null;
  }

  get(path) { return this.request('GET', path); }
  post(path, body, headers) { return this.request('POST', path, { body, headers }); }
  put(path, body) { return this.request('PUT', path, { body }); }
  patch(path, ops) { return this.request('PATCH', path, { body: JSON.stringify(ops), headers: { 'Content-Type': 'application/json-patch+json' } }); }

  // search follows next links and returns every resource (entries whose
  // search mode is "match" or "include"), up to limit.
  async search(path, limit = 2000) {
    const out = [];
    let next = path;
    while (next && out.length < limit) {
      const b = await this.get(next);
      for (const e of b.entry || []) if (e.resource && e.resource.resourceType !== 'OperationOutcome') out.push(e.resource);
      next = (b.link || []).find((l) => l.relation === 'next')?.url;
    }
    return out;
  }

  // binary fetches a file's bytes in its own type.
  async binary(ref, type) {
    const r = await this.request('GET', ref, { headers: { Accept: type || 'application/octet-stream' }, raw: true });
    if (!r.ok) throw await errorOf(r);
    return r.blob();
  }
}

export async function errorOf(r) {
  let outcome = null;
  let msg = r.status + ' ' + r.statusText;
  try {
    outcome = await r.json();
    const texts = (outcome.issue || []).map((i) => i.details?.text || i.diagnostics).filter(Boolean);
    if (texts.length) msg = texts.join('; ');
  } catch { /* not an OperationOutcome */ }
  return new FhirError(r.status, msg, outcome);
}

// Helpers to read resources for display.
export const ref = (r) => r.resourceType + '/' + r.id;
export const text = (cc) => cc ? (cc.text || cc.coding?.find((c) => c.display)?.display || cc.coding?.[0]?.code || '') : '';
export const codes = (cc) => (cc?.coding || []).map((c) => (c.system || '') + '|' + c.code);
export function dateOf(r) {
  return r.context?.period?.start || r.effectiveDateTime || r.effectivePeriod?.start || r.issued || r.performedDateTime || r.performedPeriod?.start ||
    r.onsetDateTime || r.recordedDate || r.authoredOn || r.occurrenceDateTime || r.period?.start || r.date || r.created ||
    r.sent || r.authored || r.meta?.lastUpdated || '';
}
export function quantity(o) {
  const q = o.valueQuantity;
  if (q) return `${q.value} ${q.unit || q.code || ''}`.trim();
  if (o.valueString) return o.valueString;
  if (o.valueCodeableConcept) return text(o.valueCodeableConcept);
  if (o.component) return o.component.map((c) => (c.valueQuantity ? c.valueQuantity.value : '')).join('/') + ' ' + (o.component[0]?.valueQuantity?.unit || '');
  return '';
}
