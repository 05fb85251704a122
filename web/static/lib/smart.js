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
