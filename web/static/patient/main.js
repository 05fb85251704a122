// The patient app: my consolidated record, my sources and uploads, asking
// for a second opinion (with exactly what each specialist will receive),
// following my requests, reading and comparing opinions, answering
// questions, revoking, and who saw my record.
import { t } from '../lib/i18n.js';
import { boot, h, render, loading, section, badge, field, fmtDate, fmtDateTime, fmtMoney, showDocument, announce, errorBox, uid, scrollable } from '../lib/ui.js';
import { ref, text, dateOf, quantity } from '../lib/smart.js';
import { specialties, docTypes, sensitive, flagLabel, statusLabel, consentFor, describeAccess, groupAccess, opinionView, compareView, threadView, taskOpinions, uploadFile, docTypeLabel } from '../lib/care.js';

let me = '';

boot({
  app: 'patient',
  scope: 'openid fhirUser launch/patient patient/*.cruds',
  title: () => t('patient.title'),
  nav: [['#/record', 'nav.record'], ['#/sources', 'nav.sources'], ['#/ask', 'nav.ask'], ['#/requests', 'nav.requests'], ['#/access', 'nav.access']],
  start: async (ctx) => {
    me = ctx.session.patient ? 'Patient/' + ctx.session.patient : ctx.session.fhirUser;
    if (!me.startsWith('Patient/')) throw new Error(t('patient.notpatient'));
  },
  routes: { '': record, record, sources, ask, requests, access },
});

const pid = () => me.slice('Patient/'.length);

async function everything(client) {
  return client.search(`Patient/${pid()}/$everything?_count=1000`, 5000);
}

// flagsOf reads the case summary's abnormal-result flags: one DetectedIssue
// per flagged value, implicating the Observation.
async function flagsOf(client) {
  const flags = new Map();
  try {
    const doc = await client.get(`Patient/${pid()}/$summary`);
    for (const e of doc.entry || []) {
      const r = e.resource;
      if (r?.resourceType !== 'DetectedIssue') continue;
      const code = r.evidence?.[0]?.code?.[0]?.coding?.[0]?.code;
      for (const imp of r.implicated || []) {
        const id = (imp.reference || '').replace(/^.*\/(Observation\/[^/]+)$/, '$1');
        if (id.startsWith('Observation/') && code) flags.set(id, { code, detail: r.detail || '' });
      }
    }
  } catch { /* the record shows without flags */ }
  return flags;
}

async function record({ client }) {
  loading();
  const [patient, all, flags] = await Promise.all([client.get(`Patient/${pid()}`), everything(client), flagsOf(client)]);
  const of = (type) => all.filter((r) => r.resourceType === type);
  const active = (r) => !r.clinicalStatus || text(r.clinicalStatus).toLowerCase() === 'active' || r.clinicalStatus?.coding?.some((c) => c.code === 'active');
  const conditions = of('Condition').filter(active);
  const meds = [...of('MedicationRequest'), ...of('MedicationStatement')].filter((m) => ['active', 'intended', 'on-hold'].includes(m.status));
  const labs = of('Observation').filter((o) => o.category?.some((c) => c.coding?.some((x) => x.code === 'laboratory')) || flags.has(ref(o)))
    .sort((a, b) => dateOf(b).localeCompare(dateOf(a)));
  const docs = of('DocumentReference').sort((a, b) => dateOf(b).localeCompare(dateOf(a)));
  const allergies = of('AllergyIntolerance');
  const name = patient.name?.[0] ? [...(patient.name[0].given || []), patient.name[0].family].join(' ') : pid();
  const abnormal = labs.filter((o) => flags.has(ref(o)));

  const viewer = h('div', { id: 'viewer' });
  render(
    h('h1', {}, t('record.title', { name })),
    abnormal.length ? h('p', { class: 'notice' }, t('record.abnormal', { n: abnormal.length })) : null,
    h('div', { class: 'grid two' },
      section(t('record.conditions'), list(conditions, (c) => [h('strong', {}, text(c.code)), ' ', h('span', { class: 'muted' }, t('since', { date: fmtDate(c.onsetDateTime || c.recordedDate) }))], 'record.none')),
      section(t('record.medications'), list(meds, (m) => [h('strong', {}, text(m.medicationCodeableConcept) || m.medicationReference?.display || ''), ' ', h('span', { class: 'muted' }, fmtDate(m.authoredOn || m.effectiveDateTime))], 'record.none')),
    ),
    allergies.length ? section(t('record.allergies'), list(allergies, (a) => text(a.code))) : null,
    section(t('record.labs'), labs.length ? labTable(labs, flags) : h('p', { class: 'muted' }, t('record.none'))),
    section(t('record.documents'), docs.length ? h('ul', { class: 'list', id: 'documents' }, docs.map((d) => docItem(client, d, viewer))) : h('p', { class: 'muted' }, t('record.nodocs')), viewer),
    section(t('record.timeline'), timeline(all, flags)),
  );
}

function list(items, row, empty) {
  if (!items.length) return h('p', { class: 'muted' }, t(empty || 'record.none'));
  return h('ul', { class: 'list' }, items.map((i) => h('li', {}, row(i))));
}

// labTable: two columns, so that it fits a phone: the test (with its date
// and, when flagged, why) and the result (with its flag in words, never
// colour alone).
function labTable(labs, flags) {
  return scrollable(h('table', { id: 'labs', class: 'labs' },
    h('caption', { class: 'sr-only' }, t('record.labs')),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('lab.test')), h('th', { scope: 'col' }, t('lab.value')))),
    h('tbody', {}, labs.map((o) => {
      const f = flags.get(ref(o));
      return h('tr', { class: f ? 'abnormal' : '' },
        h('td', {}, h('strong', {}, text(o.code)), h('div', { class: 'muted' }, fmtDate(dateOf(o))), f?.detail ? h('div', { class: 'hint' }, f.detail) : null),
        h('td', { class: 'value' }, h('div', {}, quantity(o)), f ? badge(flagLabel(f.code), 'bad') : badge(t('lab.normal'), 'ok')));
    }))), t('record.labs'));
}

export function docItem(client, d, viewer) {
  const att = d.content?.[0]?.attachment || {};
  const title = d.description || att.title || text(d.type) || t('doc.untitled');
  const btn = h('button', { type: 'button', class: 'secondary', onclick: () => showDocument(client, viewer, { url: att.url, contentType: att.contentType, title }) }, t('doc.view'));
  return h('li', { class: 'row spread' }, h('div', {}, h('strong', {}, title), h('div', { class: 'muted' }, [docTypeLabel(d.type), fmtDate(d.context?.period?.start || d.date)].filter(Boolean).join(' · '))), att.url ? btn : null);
}

function timeline(all, flags) {
  const kinds = { Encounter: 'tl.encounter', Condition: 'tl.condition', Procedure: 'tl.procedure', Observation: 'tl.result', Immunization: 'tl.immunization', DocumentReference: 'tl.document', MedicationRequest: 'tl.medication', DiagnosticReport: 'tl.report' };
  const items = all.filter((r) => kinds[r.resourceType] && dateOf(r)).sort((a, b) => dateOf(b).localeCompare(dateOf(a))).slice(0, 200);
  if (!items.length) return h('p', { class: 'muted' }, t('record.none'));
  return h('ol', { class: 'list', id: 'timeline' }, items.map((r) => {
    const what = r.resourceType === 'Encounter' ? (text(r.type?.[0]) || r.class?.display || '') :
      r.resourceType === 'Immunization' ? text(r.vaccineCode) : r.resourceType === 'DocumentReference' ? (r.description || text(r.type)) :
        r.resourceType === 'MedicationRequest' ? text(r.medicationCodeableConcept) : text(r.code);
    const f = flags.get(ref(r));
    return h('li', {}, h('div', { class: 'muted' }, fmtDate(dateOf(r)), ' · ', t(kinds[r.resourceType])), h('div', {}, what, r.resourceType === 'Observation' ? ' — ' + quantity(r) : '', f ? [' ', badge(flagLabel(f.code), 'bad')] : null));
  }));
}

// ---- sources and uploads

async function sources({ client }) {
  const progress = h('div', { id: 'pull-progress' });
  const pullBtn = h('button', { type: 'button', id: 'pull', onclick: () => pull(client, pullBtn, progress) }, t('pull.button'));
  const file = h('input', { type: 'file', id: 'upload-file', accept: '.pdf,.jpg,.jpeg,.png,.dcm,application/pdf,image/jpeg,image/png,application/dicom', required: true });
  const title = h('input', { type: 'text', id: 'upload-title', required: true, autocomplete: 'off' });
  const type = h('select', { id: 'upload-type' }, docTypes().map(([code, label]) => h('option', { value: code }, label)));
  const date = h('input', { type: 'date', id: 'upload-date', max: new Date().toISOString().slice(0, 10) });
  const bar = h('div', { id: 'upload-progress' });
  const form = h('form', { id: 'upload', onsubmit: (e) => { e.preventDefault(); upload(client, { file, title, type, date }, bar, form); } },
    field(t('upload.file'), file, t('upload.file.hint')), field(t('upload.titlefield'), title, t('upload.title.hint')), field(t('upload.type'), type), field(t('upload.date'), date),
    h('button', { type: 'submit' }, t('upload.button')), bar);
  const connectBox = h('div', { id: 'connect' });
  render(h('h1', {}, t('sources.title')),
    section(t('connect.title'), h('p', {}, t('connect.explain')), connectBox),
    section(t('pull.title'), h('p', {}, t('pull.explain')), pullBtn, progress),
    section(t('upload.title'), h('p', {}, t('upload.explain')), form));
  await connections(client, connectBox);
}

// ---- places the patient connects with its own sign-in there
// (Patient/$connect: the gateway is the SMART client; the browser goes to
// the place's sign-in page and comes back here with ?connect=&result=)

const partsOf = (p) => Object.fromEntries((p.part || []).map((x) => [x.name, x.valueString ?? x.valueCode ?? x.valueDateTime ?? '']));

async function connections(client, box, note) {
  const r = await client.request('GET', `Patient/${pid()}/$connect`, { raw: true });
  if (r.status === 404) { box.replaceChildren(h('p', { class: 'muted' }, t('connect.none'))); return; }
  if (!r.ok) { box.replaceChildren(errorBox(new Error(t('pull.failed', { status: r.status })))); return; }
  const srcs = ((await r.json()).parameter || []).filter((p) => p.name === 'source').map(partsOf);
  const titles = Object.fromEntries(srcs.map((s) => [s.id, s.title]));
  const back = new URLSearchParams(location.search);
  if (!note && back.get('connect') && back.get('complete')) {
    // back from signing in at the source: this app, signed in as the
    // patient, finishes the connection (the gateway connects only the
    // record the connection was started for)
    history.replaceState(null, '', location.pathname + location.hash);
    const params = { resourceType: 'Parameters', parameter: [{ name: 'source', valueString: back.get('connect') }, { name: 'complete', valueString: back.get('complete') }] };
    const done = await client.request('POST', `Patient/${pid()}/$connect`, { body: params, raw: true });
    back.set('result', done.ok ? 'connected' : 'failed');
    if (done.ok) return connections(client, box, resultNote(titles, back));
  }
  if (!note && back.get('connect') && back.get('result')) {
    note = resultNote(titles, back);
    history.replaceState(null, '', location.pathname + location.hash);
  }
  const kind = { connected: 'ok', reconnect: 'warn', 'not-connected': '' };
  const list = h('ul', { class: 'list', id: 'connect-list' }, srcs.map((s) => h('li', { 'data-source': s.id },
    h('strong', {}, s.title), ' ', badge(t('connect.status.' + s.status), kind[s.status]),
    s.since ? h('div', { class: 'muted' }, t('connect.since', { date: fmtDate(s.since) })) : null,
    h('div', { class: 'actions' },
      s.status !== 'connected' ? h('button', { type: 'button', class: 'connect', onclick: (e) => begin(client, box, s, e.currentTarget) }, t(s.status === 'reconnect' ? 'connect.reconnect' : 'connect.button', { title: s.title })) : null,
      s.status !== 'not-connected' ? h('button', { type: 'button', class: 'secondary disconnect', onclick: (e) => disconnect(client, box, s, e.currentTarget) }, t('connect.disconnect', { title: s.title })) : null))));
  box.replaceChildren(...(note ? [note] : []), srcs.length ? list : h('p', { class: 'muted' }, t('connect.none')));
}

// resultNote says how connecting a source ended (?connect=&result=).
function resultNote(titles, back) {
  const title = titles[back.get('connect')] || back.get('connect');
  const result = ['connected', 'denied'].includes(back.get('result')) ? back.get('result') : 'failed';
  return h('p', { role: result === 'connected' ? 'status' : 'alert', class: result === 'connected' ? 'success' : 'error', id: 'connect-result' },
    t(result === 'connected' ? 'connect.done' : 'connect.' + result, { title }));
}

async function begin(client, box, s, btn) {
  btn.disabled = true;
  const params = { resourceType: 'Parameters', parameter: [{ name: 'source', valueString: s.id }, { name: 'returnUrl', valueUri: location.origin + location.pathname + '#/sources' }] };
  const r = await client.request('POST', `Patient/${pid()}/$connect`, { body: params, raw: true });
  if (!r.ok) {
    btn.disabled = false;
    const why = r.status === 501 ? t('connect.disabled') : t('connect.failed', { title: s.title });
    box.prepend(h('p', { role: 'alert', class: 'error' }, why));
    return;
  }
  const url = ((await r.json()).parameter || []).find((p) => p.name === 'authorizeUrl')?.valueUri;
  announce(t('connect.going', { title: s.title }));
  location.assign(url);
}

async function disconnect(client, box, s, btn) {
  btn.disabled = true;
  const params = { resourceType: 'Parameters', parameter: [{ name: 'source', valueString: s.id }, { name: 'disconnect', valueBoolean: true }] };
  try {
    await client.request('POST', `Patient/${pid()}/$connect`, { body: params });
    await connections(client, box, h('p', { role: 'status', class: 'success' }, t('connect.disconnected', { title: s.title })));
  } catch (e) {
    btn.disabled = false;
    box.prepend(errorBox(e));
  }
}

async function pull(client, btn, out) {
  btn.disabled = true;
  const bar = h('progress', { max: 100, 'aria-label': t('pull.progress') });
  const line = h('p', { role: 'status' }, t('pull.started'));
  out.replaceChildren(bar, line);
  try {
    const r = await client.request('POST', `Patient/${pid()}/$pull`, { raw: true });
    if (r.status !== 202) throw new Error(t('pull.failed', { status: r.status }));
    const status = r.headers.get('Content-Location');
    for (;;) {
      await new Promise((ok) => setTimeout(ok, 700));
      const s = await client.request('GET', status, { raw: true });
      if (s.status === 202) {
        const p = s.headers.get('X-Progress') || '';
        const m = p.match(/(\d+) of (\d+)/);
        if (m) { bar.max = +m[2]; bar.value = +m[1]; }
        line.textContent = t('pull.running', { progress: p });
        continue;
      }
      if (!s.ok) throw new Error(t('pull.failed', { status: s.status }));
      const report = await s.json();
      bar.max = 1; bar.value = 1;
      out.replaceChildren(bar, h('p', { role: 'status', class: 'success' }, t('pull.done')), pullReport(report));
      announce(t('pull.done'));
      break;
    }
  } catch (e) {
    out.replaceChildren(errorBox(e));
  } finally {
    btn.disabled = false;
  }
}

function pullReport(report) {
  const srcs = report.sources || report.source || [];
  return h('ul', { class: 'list', id: 'pull-report' }, (Array.isArray(srcs) ? srcs : Object.entries(srcs).map(([id, v]) => ({ id, ...v }))).map((s) => {
    const w = s.written || {};
    const ok = s.state === 'done' || s.state === 'completed' || s.state === 'succeeded';
    return h('li', {}, h('strong', {}, s.id || s.source || ''), ' ', badge(ok ? t('pull.ok') : (s.state || ''), ok ? 'ok' : 'warn'),
      h('div', { class: 'muted' }, t('pull.counts', { fetched: s.fetched ?? 0, created: w.created ?? 0, updated: w.updated ?? 0, duplicates: w.duplicates ?? 0 })),
      s.reconnect ? h('div', { class: 'error' }, t('pull.reconnect')) : s.error ? h('div', { class: 'error' }, s.error) : null);
  }));
}

// upload files the file with its title, type and date, with a progress bar.
async function upload(client, { file, title, type, date }, out, form) {
  const f = file.files[0];
  if (!f) { out.replaceChildren(errorBox(new Error(t('upload.nofile')))); file.focus(); return; }
  const name = title.value.trim() || f.name;
  const bar = h('progress', { max: f.size || 1, value: 0, 'aria-label': t('upload.progress') });
  out.replaceChildren(bar, h('p', { role: 'status' }, t('upload.sending', { name: f.name })));
  try {
    await uploadFile(client, me, f, { title: name, type: type.value, date: date.value }, (loaded, total) => { bar.max = total; bar.value = loaded; });
    out.replaceChildren(h('p', { class: 'success', role: 'status', id: 'upload-done' }, t('upload.done', { title: name })));
    form.reset();
    announce(t('upload.done', { title: name }));
  } catch (e) {
    out.replaceChildren(errorBox(e));
  }
}

// ---- asking for a second opinion

async function ask({ client }) {
  loading();
  const [orgs, docs] = await Promise.all([client.search('Organization?type=prov&active=true&_count=100'), client.search(`DocumentReference?patient=${me}&_count=200`)]);
  const state = { step: 1, specialty: specialties()[0][0], question: '', chosen: [], narrow: {} };
  const draw = () => render(askStep(client, state, orgs, docs, draw));
  draw();
}

function askStep(client, st, orgs, docs, draw) {
  const head = h('h1', {}, t('ask.title'));
  const steps = h('p', { class: 'muted' }, t('ask.step', { n: st.step, of: 3 }));
  if (st.step === 1) {
    const spec = h('select', { id: 'specialty' }, specialties().map(([code, label]) => h('option', { value: code, selected: code === st.specialty }, label)));
    const q = h('textarea', { id: 'question', required: true }, st.question);
    const err = h('div');
    return [head, steps, h('form', { onsubmit: (e) => {
      e.preventDefault();
      if (!q.value.trim()) { err.replaceChildren(errorBox(new Error(t('ask.noquestion')))); q.focus(); return; }
      st.specialty = spec.value; st.question = q.value.trim(); st.step = 2; draw();
    } }, field(t('ask.specialty'), spec), field(t('ask.question'), q, t('ask.question.hint')), err, h('button', { type: 'submit' }, t('next')))];
  }
  if (st.step === 2) {
    const err = h('div');
    const boxes = orgs.map((o) => {
      const id = uid('org');
      const cb = h('input', { type: 'checkbox', id, value: ref(o), checked: st.chosen.includes(ref(o)) });
      return h('div', { class: 'check' }, cb, h('label', { for: id }, h('strong', {}, o.name || ref(o)), o.alias?.length ? h('div', { class: 'muted' }, o.alias.join(', ')) : null));
    });
    return [head, steps, h('form', { onsubmit: (e) => {
      e.preventDefault();
      st.chosen = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      if (!st.chosen.length) { err.replaceChildren(errorBox(new Error(t('ask.nospecialist')))); return; }
      for (const o of st.chosen) st.narrow[o] = st.narrow[o] || { docs: [], from: '', to: '', labels: [] };
      st.step = 3; draw();
    } }, h('fieldset', {}, h('legend', {}, t('ask.specialists')), boxes.length ? boxes : h('p', {}, t('ask.noorgs'))), err,
    h('div', { class: 'row' }, h('button', { type: 'button', class: 'secondary', onclick: () => { st.step = 1; draw(); } }, t('back')), h('button', { type: 'submit' }, t('next'))))];
  }
  // step 3: what each specialist will receive (the gateway's preview of
  // the very packages it will file), narrowed, then grant
  const nameOf = (r) => orgs.find((o) => ref(o) === r)?.name || r;
  const out = h('div', { id: 'ask-result' });
  const lists = new Map();
  const status = h('p', { class: 'muted', role: 'status', id: 'preview-status' });
  let seq = 0;
  const refresh = async () => {
    const mine = ++seq;
    status.textContent = t('share.updating');
    try {
      const packages = await previewPackages(client, st);
      if (mine !== seq) return; // a later change asked again
      for (const [org, pkg] of packages) lists.get(org)?.(pkg);
      status.textContent = t('share.exact');
    } catch (e) {
      if (mine === seq) status.replaceChildren(errorBox(e));
    }
  };
  const cards = st.chosen.map((org) => shareCard(org, nameOf(org), st.narrow[org], docs, lists, refresh));
  coverage(client, st.chosen, cards);
  const grant = h('button', { type: 'button', id: 'grant', onclick: async () => {
    grant.disabled = true;
    out.replaceChildren(h('p', { role: 'status' }, t('ask.sending')));
    try {
      const res = await sendRequest(client, st);
      out.replaceChildren(h('div', { class: 'success', role: 'status' }, t('ask.sent', { n: res.tasks.length }), ' ', h('a', { href: '#/requests' }, t('ask.follow'))));
      announce(t('ask.sent', { n: res.tasks.length }));
    } catch (e) {
      out.replaceChildren(errorBox(e));
      grant.disabled = false;
    }
  } }, t('ask.grant'));
  refresh();
  return [head, steps, h('p', {}, t('ask.shareexplain')), status, ...cards,
    h('div', { class: 'row' }, h('button', { type: 'button', class: 'secondary', onclick: () => { st.step = 2; draw(); } }, t('back')), grant), out];
}

// coverage asks the gateway whether the patient's insurance covers each
// specialist (Patient/$coverage-check) and says so on its card; nothing is
// shown when the gateway cannot tell.
async function coverage(client, orgs, cards) {
  try {
    const res = await client.post(`Patient/${pid()}/$coverage-check`, { resourceType: 'Parameters', parameter: orgs.map((o) => ({ name: 'recipient', valueReference: { reference: o } })) });
    for (const p of res.parameter || []) {
      const part = (n) => p.part?.find((x) => x.name === n);
      const org = part('recipient')?.valueReference?.reference;
      const card = cards.find((c) => c.dataset.org === org);
      if (!card) continue;
      const status = part('status')?.valueCode || 'unknown';
      const copay = part('copay')?.valueMoney;
      const pre = part('preauthorization')?.valueCode;
      card.querySelector('h2').after(h('p', { class: 'coverage', 'data-coverage': status },
        badge(t('coverage.' + status, null, status), status === 'covered' ? 'ok' : status === 'not-covered' ? 'bad' : 'info'),
        part('inNetwork') ? ' ' + t(part('inNetwork').valueBoolean ? 'coverage.innetwork' : 'coverage.outnetwork') : '',
        pre && pre !== 'not-required' ? ' ' + t('preauth.' + pre, null, pre) : '',
        copay ? ' ' + t('coverage.copay', { amount: fmtMoney(copay) }) : ''));
    }
  } catch { /* no insurer connected: nothing to say */ }
}

// previewPackages asks the gateway for the package each chosen specialist
// would receive under the Consents the app is about to write (drafts, not
// stored): $second-opinion with preview=true stores nothing.
async function previewPackages(client, st) {
  const now = new Date();
  const params = { resourceType: 'Parameters', parameter: [
    { name: 'preview', valueBoolean: true },
    ...st.chosen.map((o) => ({ name: 'recipient', valueReference: { reference: o } })),
    ...st.chosen.map((o) => ({ name: 'consent', resource: consentFor(me, o, st.narrow[o], now) })),
    ...specialtyParams(st),
  ] };
  const res = await client.post(`Patient/${pid()}/$second-opinion`, params);
  const out = new Map();
  for (const p of res.parameter || []) {
    if (p.name !== 'preview') continue;
    const org = p.part.find((x) => x.name === 'recipient')?.valueReference?.reference;
    out.set(org, p.part.find((x) => x.name === 'package')?.resource);
  }
  return out;
}

function specialtyParams(st) {
  const spec = specialties().find(([code]) => code === st.specialty);
  return [
    { name: 'specialty', valueCodeableConcept: { coding: [{ system: 'http://snomed.info/sct', code: spec[0], display: spec[2] }], text: spec[1] } },
    { name: 'question', valueString: st.question },
  ];
}

// packageContents lists the patient's data a package holds, by kind (the
// Composition and what the gateway wrote for the case summary, whose
// fullUrls are urn:uuid, are the package's own pages).
function packageContents(pkg) {
  const data = (pkg?.entry || []).filter((e) => e.resource && !e.fullUrl?.startsWith('urn:uuid:')).map((e) => e.resource);
  const byType = {};
  for (const r of data) byType[r.resourceType] = (byType[r.resourceType] || 0) + 1;
  return { data, byType };
}

// shareCard shows one specialist's package, as the gateway previews it,
// and the controls that narrow it; every change asks for a new preview.
function shareCard(org, name, n, docs, lists, refresh) {
  const id = uid('share');
  const list = h('div', { class: 'share-list', 'aria-live': 'polite' }, h('p', { class: 'muted' }, t('loading')));
  lists.set(org, (pkg) => {
    const { data, byType } = packageContents(pkg);
    const shown = data.filter((r) => r.resourceType === 'DocumentReference');
    list.replaceChildren(
      h('p', {}, t('share.count', { n: data.length })),
      h('ul', { class: 'list' }, Object.entries(byType).sort().map(([type, c]) => h('li', {}, t('type.' + type, null, type), ': ', c))),
      h('h3', {}, t('share.docs')),
      h('ul', { class: 'list' }, shown.length ? shown.map((d) => h('li', {}, d.description || text(d.type) || d.id)) : h('li', { class: 'muted' }, t('share.nodocs'))));
  });
  const docBoxes = docs.map((d) => {
    const cid = uid('doc');
    const cb = h('input', { type: 'checkbox', id: cid, checked: n.docs.includes(ref(d)), onchange: () => {
      n.docs = cb.checked ? [...n.docs, ref(d)] : n.docs.filter((x) => x !== ref(d)); refresh();
    } });
    return h('div', { class: 'check' }, cb, h('label', { for: cid }, t('share.excludedoc', { title: d.description || text(d.type) || d.id })));
  });
  const from = h('input', { type: 'date', value: n.from, onchange: () => { n.from = from.value; refresh(); } });
  const to = h('input', { type: 'date', value: n.to, onchange: () => { n.to = to.value; refresh(); } });
  const labelBoxes = sensitive().map(([code, label]) => {
    const cid = uid('lbl');
    const cb = h('input', { type: 'checkbox', id: cid, checked: n.labels.includes(code), onchange: () => {
      n.labels = cb.checked ? [...n.labels, code] : n.labels.filter((x) => x !== code); refresh();
    } });
    return h('div', { class: 'check' }, cb, h('label', { for: cid }, label));
  });
  return h('section', { class: 'card share', 'aria-labelledby': id, 'data-org': org },
    h('h2', { id }, t('share.title', { name })), list,
    h('details', {}, h('summary', {}, t('share.narrow')),
      docBoxes.length ? h('fieldset', {}, h('legend', {}, t('share.excludedocs')), docBoxes) : null,
      h('fieldset', {}, h('legend', {}, t('share.excludeperiod')), h('div', { class: 'row' }, field(t('share.from'), from), field(t('share.to'), to))),
      h('fieldset', {}, h('legend', {}, t('share.excludelabels')), labelBoxes)));
}

// sendRequest writes one Consent per specialist (what it may see, with
// the exclusions as deny provisions) and then asks them all at once.
async function sendRequest(client, st) {
  const consents = [];
  for (const org of st.chosen) {
    const c = await client.post('Consent', consentFor(me, org, st.narrow[org], new Date()));
    consents.push(c);
  }
  const params = { resourceType: 'Parameters', parameter: [
    ...st.chosen.map((o) => ({ name: 'recipient', valueReference: { reference: o } })),
    ...consents.map((c) => ({ name: 'consent', valueReference: { reference: 'Consent/' + c.id } })),
    ...specialtyParams(st),
  ] };
  const out = await client.post(`Patient/${pid()}/$second-opinion`, params);
  return { tasks: (out.parameter || []).filter((p) => p.name === 'task') };
}

// ---- my requests

async function requests({ client, session }) {
  loading();
  const [tasks, srs, consents, comms] = await Promise.all([
    client.search(`Task?patient=${me}&_count=200`),
    client.search(`ServiceRequest?subject=${me}&_count=200`),
    client.search(`Consent?patient=${me}&_count=200`),
    client.search(`Communication?subject=${me}&_count=500`),
  ]);
  const orgNames = new Map();
  await Promise.all([...new Set(tasks.map((x) => x.owner?.reference).filter(Boolean))].map(async (o) => {
    try { const r = await client.get(o); orgNames.set(o, r.name || o); } catch { orgNames.set(o, o); }
  }));
  const referral = srs.filter((s) => s.requisition?.system === 'https://fhirgate.org/fhir/sid/second-opinion').sort((a, b) => (b.authoredOn || '').localeCompare(a.authoredOn || ''));
  if (!referral.length) {
    render(h('h1', {}, t('requests.title')), h('p', {}, t('requests.none')), h('a', { class: 'button', href: '#/ask' }, t('nav.ask')));
    return;
  }
  const cards = [];
  for (const sr of referral) {
    const mine = tasks.filter((x) => x.focus?.reference === 'ServiceRequest/' + sr.id);
    const opinions = await taskOpinions(client, mine);
    const cid = uid('req');
    cards.push(h('section', { class: 'card', 'aria-labelledby': cid, 'data-request': sr.id },
      h('h2', { id: cid }, text(sr.performerType) || t('requests.request')),
      h('p', {}, h('strong', {}, t('requests.question')), ' ', sr.note?.[0]?.text || ''),
      h('p', { class: 'muted' }, t('requests.asked', { date: fmtDate(sr.authoredOn) })),
      h('ul', { class: 'list' }, mine.map((task) => taskItem(client, task, orgNames.get(task.owner?.reference) || '', consents, comms, opinions.get(task.id), session.name))),
      opinions.size > 1 ? compareView(client, sr, mine, opinions, orgNames) : null));
  }
  render(h('h1', {}, t('requests.title')), ...cards);
}

function taskItem(client, task, owner, consents, comms, opinion, myName) {
  const consentRef = (task.input || []).map((i) => i.valueReference?.reference).find((r) => r?.startsWith('Consent/'));
  const consent = consents.find((c) => c.status === 'active' && c.provision?.actor?.some((a) => a.reference?.reference === task.owner?.reference));
  const out = h('div');
  const revoke = consent ? h('button', { type: 'button', class: 'danger', 'data-revoke': task.owner?.reference, onclick: async () => {
    if (!confirm(t('revoke.confirm', { name: owner }))) return;
    revoke.disabled = true;
    try {
      await client.patch('Consent/' + consent.id, [{ op: 'replace', path: '/status', value: 'inactive' }]);
      out.replaceChildren(h('p', { class: 'success', role: 'status' }, t('revoke.done', { name: owner })));
      announce(t('revoke.done', { name: owner }));
      revoke.remove();
    } catch (e) { out.replaceChildren(errorBox(e)); revoke.disabled = false; }
  } }, t('revoke.button', { name: owner })) : h('p', { class: 'muted' }, t('revoke.already'));
  void consentRef;
  const thread = comms.filter((c) => (c.basedOn || []).concat(c.partOf || []).some((r) => r.reference === 'Task/' + task.id));
  return h('li', { 'data-task': task.id },
    h('div', { class: 'row spread' }, h('strong', {}, owner), badge(statusLabel(task.status), task.status === 'completed' ? 'ok' : ['rejected', 'cancelled', 'failed'].includes(task.status) ? 'bad' : 'info')),
    task.statusReason ? h('p', {}, t('requests.reason'), ' ', text(task.statusReason)) : null,
    threadView(client, task, thread, me, 'patient', null, myName),
    opinion ? opinionView(opinion, owner) : null,
    h('div', { class: 'row' }, revoke), out);
}

// ---- who saw my record

async function access({ client }) {
  loading();
  let rows;
  try {
    const log = await client.get(`Patient/${pid()}/$access-log?_count=300`);
    // the people and organisations named, by their names (read directly:
    // a directory entry is about nobody)
    const refs = new Set();
    for (const p of log.parameter || []) for (const x of p.part || []) if ((x.name === 'who' || x.name === 'organization') && /^(Practitioner|Organization)\//.test(x.valueReference?.reference || '')) refs.add(x.valueReference.reference);
    const names = new Map();
    await Promise.all([...refs].map(async (r) => {
      try {
        const res = await client.get(r);
        names.set(r, Array.isArray(res.name) ? [...(res.name[0]?.prefix || []), ...(res.name[0]?.given || []), res.name[0]?.family].filter(Boolean).join(' ') : res.name || r);
      } catch { /* shown by its id */ }
    }));
    rows = accessRowsFromLog(log, names);
  } catch (e) {
    if (e.status !== 404 && e.status !== 400) throw e;
    const events = await client.search(`AuditEvent?patient=${me}&_sort=-date&_count=200`, 500);
    rows = events.map(describeAccess);
  }
  rows = groupAccess(rows);
  // first who, in short (how often, when last, refusals), then every
  // access
  const parties = new Map();
  for (const r of rows) {
    if (!r.party) continue;
    const p = parties.get(r.party) || { n: 0, refused: 0, last: '' };
    p.n += r.count || 1;
    if (r.refused) p.refused += r.count || 1;
    if ((r.when || '') > p.last) p.last = r.when || '';
    parties.set(r.party, p);
  }
  render(h('h1', {}, t('access.title')), h('p', {}, t('access.explain')),
    parties.size ? section(t('access.who'), h('ul', { class: 'list', id: 'access-who' }, [...parties].map(([party, p]) => h('li', {},
      h('strong', {}, party), h('div', { class: 'muted' }, t('access.summary', { n: p.n, last: fmtDateTime(p.last) })),
      p.refused ? badge(t('access.refusedn', { n: p.refused }), 'bad') : null)))) : null,
    rows.length ? section(t('access.all'), h('ul', { class: 'list', id: 'access-log' }, rows.map((r) => h('li', {},
      h('div', {}, r.sentence, r.count > 1 ? h('span', { class: 'muted' }, ' (', t('access.times', { n: r.count }), ')') : null),
      h('div', { class: 'muted' }, fmtDateTime(r.when), r.consent ? ' · ' + t('access.under') : ''),
      r.refused ? [badge(t('access.refused'), 'bad'), r.reason ? h('div', { class: 'hint' }, r.reason) : null] : null)))) : h('p', {}, t('access.none')));
}

// accessRowsFromLog reads Patient/$access-log: one "access" per event
// (when, who, organization, client, action, resource, consent, outcome,
// reason), in the app's own words (the server's one-line text is English).
function accessRowsFromLog(log, names) {
  const rows = [];
  for (const p of log.parameter || []) {
    if (p.name !== 'access') continue;
    const parts = p.part || [];
    const one = (n) => parts.find((x) => x.name === n);
    const all = (n) => parts.filter((x) => x.name === n);
    const refName = (x) => x?.valueReference?.display || names.get(x?.valueReference?.reference) || (x?.valueReference?.reference || '').replace(/^(Organization|Practitioner|Patient)\//, '');
    const who = one('who')?.valueReference?.reference === me ? t('access.you') : refName(one('who')) || one('client')?.valueString || t('access.someone');
    const org = refName(one('organization'));
    const action = one('action')?.valueCode || '';
    const types = [...new Set(all('resource').map((x) => (x.valueReference?.reference || '').split('/')[0]).filter((ty) => ty && ty !== 'Patient'))];
    const what = types.length ? types.map((ty) => t('type.' + ty, null, ty)).join(', ') : t('access.record');
    const outcome = one('outcome')?.valueCode;
    rows.push({
      party: who + (org && org !== who ? ` (${org})` : ''),
      sentence: t('access.sentence', { who, org: org && org !== who ? ` (${org})` : '', action: t('verb.' + action, null, action.replace(/^\$/, '')), what }),
      when: one('when')?.valueInstant || one('when')?.valueDateTime,
      consent: all('consent').map((x) => x.valueReference?.reference).join(', '),
      refused: outcome && outcome !== 'allowed',
      reason: one('reason')?.valueString,
    });
  }
  return rows;
}
