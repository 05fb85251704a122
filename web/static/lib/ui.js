// The apps' shell and DOM helpers: element building (text is always set as
// text, never parsed as HTML), rendering a screen, announcing changes to
// screen readers, dates, the inline document viewer, and boot (login,
// header, routing).
import { t, lang, setLang, languages } from './i18n.js';
import { Session, Client } from './smart.js';

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let ids = 0;
export const uid = (p) => `${p}-${++ids}`;

// field is a labelled form control.
export function field(label, control, hint) {
  const id = control.id || (control.id = uid('f'));
  const hintEl = hint ? h('p', { class: 'hint', id: id + '-hint' }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), hintEl, control);
}

// render replaces the main region's content and moves focus to its heading
// (so a screen reader hears the new screen, and the tab order starts there).
export function render(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.flat().filter(Boolean));
  const heading = main.querySelector('h1, h2');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
  main.setAttribute('aria-busy', 'false');
  performance.mark('fhirgate:screen'); // the browser test's time to interactive
}

export function loading() {
  const main = document.getElementById('main');
  main.setAttribute('aria-busy', 'true');
  main.replaceChildren(h('p', { class: 'loading', role: 'status' }, t('loading')));
}

// announce says msg in the polite live region.
export function announce(msg) {
  const r = document.getElementById('status');
  r.textContent = '';
  setTimeout(() => { r.textContent = msg; }, 50);
}

export function errorBox(err) {
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, t('error.title')), ' ', err.message || String(err));
}

export function fmtDate(s) {
  if (!s) return '';
  const d = new Date(s.length === 10 ? s + 'T00:00:00' : s);
  if (isNaN(d)) return s;
  return d.toLocaleDateString(lang(), { year: 'numeric', month: 'short', day: 'numeric' });
}
export function fmtDateTime(s) {
  if (!s) return '';
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toLocaleString(lang(), { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// fmtMoney is a FHIR Money in the reader's way of writing amounts
// ("€25.00"); the bare number when the currency is unknown.
export function fmtMoney(m) {
  if (!m || m.value === undefined) return '';
  try {
    return new Intl.NumberFormat(lang(), { style: 'currency', currency: m.currency }).format(m.value);
  } catch {
    return `${m.value} ${m.currency || ''}`.trim();
  }
}

export function section(title, ...body) {
  const id = uid('s');
  return h('section', { 'aria-labelledby': id, class: 'card' }, h('h2', { id }, title), ...body);
}

export function badge(text, kind) { return h('span', { class: 'badge ' + (kind || '') }, text); }

// Files the viewer shows inline, by their type; anything else is offered as
// a download. The blob is made with this type, never with one a server or
// an upload chose, so nothing fetched can become a page that runs.
const viewable = { 'application/pdf': 'pdf', 'image/jpeg': 'img', 'image/png': 'img', 'application/dicom': 'dicom' };

// viewer fetches a Binary with the user's token and shows it in place.
export async function showDocument(client, container, { url, contentType, title }) {
  container.replaceChildren(h('p', { role: 'status' }, t('viewer.loading')));
  try {
    const kind = viewable[contentType];
    const blob = await client.binary(url, contentType);
    const obj = URL.createObjectURL(new Blob([blob], { type: kind && kind !== 'dicom' ? contentType : 'application/octet-stream' }));
    const close = h('button', { type: 'button', class: 'secondary', onclick: () => { URL.revokeObjectURL(obj); container.replaceChildren(); } }, t('viewer.close'));
    const download = h('a', { href: obj, download: (title || 'document').replace(/[^\w.-]+/g, '_') }, t('viewer.download'));
    let view;
    if (kind === 'pdf') view = h('iframe', { src: obj, title: t('viewer.frame', { title }), class: 'doc-frame' });
    else if (kind === 'img') view = h('img', { src: obj, alt: title || t('viewer.image'), class: 'doc-image' });
    else if (kind === 'dicom') {
      // loaded on demand: most visits never open a scan
      try {
        const { parse, draw } = await import('./dicom.js');
        view = draw(parse(await blob.arrayBuffer()));
        view.className = 'doc-image';
        view.setAttribute('role', 'img');
        view.setAttribute('aria-label', title || t('viewer.image'));
      } catch (e) {
        view = h('p', {}, t('viewer.nodicom', { why: e.message }));
      }
    } else view = h('p', {}, t('viewer.noinline'));
    container.replaceChildren(h('div', { class: 'viewer', role: 'region', 'aria-label': t('viewer.region', { title }) },
      h('div', { class: 'viewer-bar' }, h('strong', {}, title), download, close), view));
    close.focus();
  } catch (e) {
    container.replaceChildren(errorBox(e));
  }
}

// safeNarrative rebuilds a resource's XHTML narrative from a short list of
// structural elements, text only: no attribute, link, image or style of the
// source survives, so a narrative can never run or load anything.
const allowed = new Set(['P', 'DIV', 'SPAN', 'BR', 'B', 'STRONG', 'I', 'EM', 'UL', 'OL', 'LI', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD', 'CAPTION', 'H3', 'H4', 'H5', 'H6', 'SMALL', 'SUB', 'SUP', 'DL', 'DT', 'DD']);
export function safeNarrative(div) {
  const out = h('div', { class: 'narrative' });
  if (!div) return out;
  const src = new DOMParser().parseFromString(div, 'text/html').body;
  const copy = (from, to) => {
    for (const n of from.childNodes) {
      if (n.nodeType === Node.TEXT_NODE) to.append(n.textContent);
      else if (n.nodeType === Node.ELEMENT_NODE) {
        if (allowed.has(n.tagName)) {
          const el = document.createElement(n.tagName === 'TABLE' ? 'table' : n.tagName.toLowerCase());
          copy(n, el);
          to.append(n.tagName === 'TABLE' ? scrollable(el, n.querySelector('caption')?.textContent || t('table.label')) : el);
        } else if (n.tagName !== 'SCRIPT' && n.tagName !== 'STYLE') copy(n, to);
      }
    }
  };
  copy(src, out);
  return out;
}

// scrollable wraps a wide table so that it scrolls sideways on a phone; the
// region is focusable so that a keyboard can scroll it too.
export function scrollable(table, label) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, table);
}

// What both apps do first: find the FHIR base, finish or start the login,
// build the header (brand, navigation, who is signed in) and route hash
// URLs to screens.

// fhirBase is the gateway's FHIR base: the apps live under <base>/app/.
export function fhirBase() {
  const i = location.pathname.indexOf('/app/');
  return location.origin + (i > 0 ? location.pathname.slice(0, i) : '');
}

export async function boot({ app, scope, title, routes, nav, start }) {
  const params = new URLSearchParams(location.search);
  if (params.get('lang')) setLang(params.get('lang'));
  document.documentElement.lang = lang() === 'en-XA' ? 'en' : lang();
  document.title = title();
  document.querySelector('.skip').textContent = t('skip');
  document.getElementById('brand').textContent = title();
  const clientID = document.querySelector('meta[name="fhirgate-client-id"]').content;
  const base = fhirBase();
  const session = new Session(app, base, clientID, scope);
  let s;
  try {
    s = (await session.complete()) || session.current();
  } catch (e) {
    render(h('h1', {}, t('signin.title')), errorBox(e), signInButton(session));
    return;
  }
  if (!s) {
    render(h('h1', {}, t('signin.title')), h('p', {}, t('signin.' + app)), signInButton(session), langPicker());
    return;
  }
  const expired = () => { session.signOut(); location.reload(); };
  const client = new Client(base, s.token, expired);
  const ctx = { client, session: s, base };
  document.getElementById('who').replaceChildren(
    h('span', {}, s.name || s.fhirUser || ''),
    h('button', { type: 'button', onclick: () => { session.signOut(); location.assign(location.pathname); } }, t('signout')));
  const navList = h('ul', {}, nav.map(([hash, key]) => h('li', {}, h('a', { href: hash }, t(key)))));
  document.getElementById('nav').replaceChildren(h('nav', { 'aria-label': t('nav.label') }, navList));
  document.getElementById('nav').setAttribute('role', 'none');
  const route = async () => {
    const hash = location.hash || nav[0][0];
    for (const a of navList.querySelectorAll('a')) {
      if (hash === a.getAttribute('href') || hash.startsWith(a.getAttribute('href') + '/')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const [path, ...args] = hash.slice(2).split('/');
    const screen = routes[path] || routes[''];
    try {
      await screen(ctx, ...args.map(decodeURIComponent));
    } catch (e) {
      render(h('h1', {}, t('error.title')), e.status === 403 ? h('p', { class: 'error', role: 'alert' }, t('error.forbidden')) : errorBox(e));
    }
  };
  window.addEventListener('hashchange', route);
  if (start) await start(ctx);
  await route();
}

function signInButton(session) {
  return h('p', {}, h('button', { type: 'button', id: 'signin', onclick: () => session.begin() }, t('signin.button')));
}

function langPicker() {
  const sel = h('select', { id: 'lang', onchange: () => { setLang(sel.value); location.reload(); } },
    languages.map(([code, name]) => h('option', { value: code, selected: code === lang() }, name)));
  return h('div', { class: 'field' }, h('label', { for: 'lang' }, t('language')), sel);
}
