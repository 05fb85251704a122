// What both apps do first: find the FHIR base, finish or start the login,
// build the header (brand, navigation, who is signed in) and route hash
// URLs to screens.
import { Session } from './smart.js';
import { Client } from './fhir.js';
import { t, setLang, lang, languages } from './i18n.js';
import { h, render, errorBox } from './ui.js';

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
