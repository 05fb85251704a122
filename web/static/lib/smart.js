// SMART App Launch, standalone: OpenID Connect authorization code with PKCE
// (S256) as a public client. The endpoints come from the FHIR server's
// /.well-known/smart-configuration; the token lives in this tab's
// sessionStorage only and is sent to the FHIR server in the Authorization
// header, never in a cookie or a URL.

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

export class Session {
  constructor(app, fhirBase, clientID, scope) {
    this.app = app;
    this.base = fhirBase;
    this.clientID = clientID;
    this.scope = scope;
    this.key = 'fhirgate.' + app;
  }

  redirectURI() { return location.origin + location.pathname; }

  // current returns the stored login when it has not expired.
  current() {
    try {
      const s = JSON.parse(sessionStorage.getItem(this.key) || 'null');
      if (s && s.token && s.expiresAt > Date.now() + 5000) return s;
    } catch { /* a damaged entry is a signed-out tab */ }
    return null;
  }

  async config() {
    const r = await fetch(this.base + '/.well-known/smart-configuration', { headers: { Accept: 'application/json' } });
    if (!r.ok) throw new Error('smart-configuration: ' + r.status);
    return r.json();
  }

  // begin sends the browser to the identity provider's login.
  async begin() {
    const cfg = await this.config();
    const verifier = random(48);
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
    const state = random(16);
    sessionStorage.setItem(this.key + '.pending', JSON.stringify({ state, verifier, token: cfg.token_endpoint }));
    const q = new URLSearchParams({
      response_type: 'code', client_id: this.clientID, redirect_uri: this.redirectURI(),
      scope: this.scope, state, aud: this.base,
      code_challenge: b64url(digest), code_challenge_method: 'S256',
    });
    location.assign(cfg.authorization_endpoint + '?' + q);
  }

  // complete finishes a login when the identity provider sent the browser
  // back with a code; null when this load is not a return from a login.
  async complete() {
    const q = new URLSearchParams(location.search);
    if (!q.has('code') && !q.has('error')) return null;
    const pending = JSON.parse(sessionStorage.getItem(this.key + '.pending') || 'null');
    sessionStorage.removeItem(this.key + '.pending');
    history.replaceState(null, '', this.redirectURI() + location.hash);
    if (!pending || q.get('state') !== pending.state) throw new Error('login state mismatch');
    if (q.has('error')) throw new Error(q.get('error'));
    const r = await fetch(pending.token, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: q.get('code'), redirect_uri: this.redirectURI(),
        client_id: this.clientID, code_verifier: pending.verifier,
      }),
    });
    if (!r.ok) throw new Error('token endpoint: ' + r.status);
    const t = await r.json();
    const claims = t.id_token ? decodeClaims(t.id_token) : {};
    const s = {
      token: t.access_token,
      expiresAt: Date.now() + 1000 * (t.expires_in || 300),
      patient: t.patient || '',
      fhirUser: t.fhirUser || claims.fhirUser || '',
      name: claims.name || '',
      scope: t.scope || '',
    };
    sessionStorage.setItem(this.key, JSON.stringify(s));
    return s;
  }

  signOut() { sessionStorage.removeItem(this.key); }
}

// decodeClaims reads a JWT's payload for display (who is signed in); the
// FHIR server verifies the access token, the app trusts nothing in it.
function decodeClaims(jwt) {
  try {
    const p = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(p))));
  } catch { return {}; }
}

// A small FHIR R4 client over fetch: JSON in and out, the user's bearer
// token on every request, OperationOutcomes turned into errors that say
// what the server said. (One module with the login: the fewer modules, the
// fewer round trips on a slow connection.)

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
