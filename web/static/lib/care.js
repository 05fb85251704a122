// The second-opinion vocabulary both apps share: specialties, document
// types, sensitive categories, plain words for statuses and flags, the
// Consent the patient app writes, opinion documents, follow-up threads.
import { t } from './i18n.js';
import { h, badge, fmtDate, fmtDateTime, errorBox, announce, uid, field, scrollable, showDocument } from './ui.js';
import { text } from './smart.js';

const SNOMED = 'http://snomed.info/sct';
const ACTCODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
export const REQUISITION = 'https://fhirgate.org/fhir/sid/second-opinion';

// [SNOMED code, label, SNOMED display]: the specialties the gateway knows
// the expected investigations of (referral/specialties).
export const specialties = () => [
  ['394579002', t('spec.cardiology'), 'Cardiology'],
  ['394583002', t('spec.endocrinology'), 'Endocrinology'],
  ['394589003', t('spec.nephrology'), 'Nephrology'],
  ['394591006', t('spec.neurology'), 'Neurology'],
  ['394593009', t('spec.oncology'), 'Medical oncology'],
  ['394801008', t('spec.orthopaedics'), 'Trauma and orthopaedics'],
];

// LOINC document types a patient uploads.
export const docTypes = () => [
  ['11526-1', t('doctype.pathology')],
  ['11502-2', t('doctype.lab')],
  ['18748-4', t('doctype.imaging')],
  ['57833-6', t('doctype.prescription')],
  ['18842-5', t('doctype.discharge')],
  ['11488-4', t('doctype.consult')],
  ['34133-9', t('doctype.other')],
];

// docTypeLabel names a DocumentReference's type in words: the label of a
// LOINC code the app offers, else the type's own text or display.
export function docTypeLabel(cc) {
  const code = cc?.coding?.find((c) => c.system === 'http://loinc.org')?.code;
  return docTypes().find(([c]) => c === code)?.[1] || text(cc);
}

// Sensitive categories, as HL7 v3 ActCode security labels.
export const sensitive = () => [
  ['PSY', t('label.PSY')], ['ETH', t('label.ETH')], ['HIV', t('label.HIV')], ['STD', t('label.STD')], ['SEX', t('label.SEX')],
];

export const flagLabel = (code) => t('flag.' + code, null, t('flag.A'));
export const statusLabel = (s) => t('status.' + s, null, s);

// consentFor is the Consent a patient gives one specialist: it may see the
// record for treatment from now on, except the documents, the period and
// the sensitive categories the patient excluded (nested deny provisions).
export function consentFor(patient, org, n, now) {
  const deny = [];
  if (n.docs.length) deny.push({ type: 'deny', data: n.docs.map((r) => ({ meaning: 'instance', reference: { reference: r } })) });
  if (n.from || n.to) {
    const p = {};
    if (n.from) p.start = n.from;
    if (n.to) p.end = n.to;
    deny.push({ type: 'deny', dataPeriod: p });
  }
  if (n.labels.length) deny.push({ type: 'deny', securityLabel: n.labels.map((code) => ({ system: ACTCODE, code })) });
  const provision = {
    type: 'permit',
    period: { start: now.toISOString() },
    actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: org } }],
  };
  if (deny.length) provision.provision = deny;
  return {
    resourceType: 'Consent', status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: patient }, dateTime: now.toISOString(),
    policyRule: { coding: [{ system: ACTCODE, code: 'OPTIN' }] },
    provision,
  };
}

// groupAccess folds the same access by the same party within a minute into
// one line with a count (an app's one screen reads several resources).
export function groupAccess(rows) {
  const out = [];
  for (const r of rows) {
    const key = r.sentence + '|' + !!r.refused + '|' + (r.when || '').slice(0, 16);
    const last = out[out.length - 1];
    if (last && last.key === key) { last.count++; continue; }
    out.push({ ...r, key, count: 1 });
  }
  return out;
}

// describeAccess turns an AuditEvent into a sentence.
export function describeAccess(ev) {
  const agent = (ev.agent || []).find((a) => a.requestor) || ev.agent?.[0] || {};
  const who = agent.who?.display || agent.who?.reference || agent.name || t('access.someone');
  const org = (ev.agent || []).map((a) => a.who?.reference).find((r) => r?.startsWith('Organization/'));
  const action = t('action.' + (ev.action || 'R'), null, ev.action || '');
  const what = (ev.entity || []).map((e) => e.what?.reference).filter((r) => r && !r.startsWith('Patient/')).map((r) => t('type.' + r.split('/')[0], null, r.split('/')[0]));
  const consent = (ev.entity || []).map((e) => e.what?.reference).find((r) => r?.startsWith('Consent/'));
  return {
    sentence: t('access.sentence', { who, org: org ? ` (${org.replace('Organization/', '')})` : '', action, what: what.length ? [...new Set(what)].join(', ') : t('access.record') }),
    when: ev.recorded, consent, refused: ev.outcome && ev.outcome !== '0',
  };
}

// taskOpinions reads the opinion each completed (or interim) Task points
// at: a document Bundle (the structured opinion) or a DiagnosticReport.
export async function taskOpinions(client, tasks) {
  const out = new Map();
  await Promise.all(tasks.map(async (task) => {
    const refs = (task.output || []).map((o) => o.valueReference?.reference).filter((r) => r && (r.startsWith('Bundle/') || r.startsWith('DiagnosticReport/')));
    if (!refs.length) return;
    try { out.set(task.id, await client.get(refs[refs.length - 1])); } catch { /* withheld or gone */ }
  }));
  return out;
}

// opinionSections reads an opinion into [{code, title, text}].
export function opinionSections(doc) {
  if (doc.resourceType === 'DiagnosticReport') {
    return [{ code: 'comment', title: t('opinion.conclusion'), text: doc.conclusion || '' }];
  }
  const comp = doc.entry?.[0]?.resource;
  if (!comp || comp.resourceType !== 'Composition') return [];
  return (comp.section || []).map((s) => ({
    code: s.code?.coding?.[0]?.code || '',
    title: s.title || text(s.code),
    text: narrative(s.text?.div),
  }));
}

// narrative is the text of an XHTML narrative (parsed inertly, never
// inserted as HTML).
function narrative(div) {
  if (!div) return '';
  const doc = new DOMParser().parseFromString(div, 'text/html');
  const blocks = [...doc.body.querySelectorAll('p, li, tr, h1, h2, h3, h4, div:not(:has(*))')];
  const parts = blocks.length ? blocks.map((b) => b.textContent.trim()).filter(Boolean) : [doc.body.textContent.trim()];
  return parts.join('\n');
}

export function opinionView(doc, author) {
  const secs = opinionSections(doc);
  const status = doc.resourceType === 'Bundle' ? doc.entry?.[0]?.resource?.status : doc.status;
  return h('div', { class: 'opinion', 'data-opinion': doc.id },
    h('h3', {}, t('opinion.from', { name: author }), ' ', status === 'preliminary' ? badge(t('opinion.interim'), 'warn') : null),
    h('dl', { class: 'facts' }, secs.map((s) => [h('dt', {}, sectionTitle(s)), h('dd', {}, s.text)])));
}

const sectionTitle = (s) => t('section.' + s.code, null, s.title);

// compareView shows several opinions of one request side by side, section
// by section, with the gateway's comparison (ServiceRequest/$opinions) of
// where they agree and differ when it offers one.
export function compareView(client, sr, tasks, opinions, names) {
  const id = uid('cmp');
  const box = h('section', { class: 'compare-box', 'aria-labelledby': id, id: 'compare' }, h('h3', { id }, t('compare.title')));
  const cols = tasks.filter((x) => opinions.has(x.id));
  const codes = [];
  for (const x of cols) for (const s of opinionSections(opinions.get(x.id))) if (!codes.includes(s.code)) codes.push(s.code);
  // one column per specialist; each topic heads its own row group, so that
  // on a phone the opinions get the whole width side by side
  const grid = scrollable(h('table', { class: 'compare-table' },
    h('thead', {}, h('tr', {}, cols.map((x) => h('th', { scope: 'col' }, names.get(x.owner?.reference) || x.owner?.reference)))),
    codes.map((code) => h('tbody', {},
      h('tr', {}, h('th', { scope: 'rowgroup', colspan: cols.length, class: 'topic' }, t('section.' + code, null, code))),
      h('tr', {}, cols.map((x) => h('td', {}, opinionSections(opinions.get(x.id)).find((s) => s.code === code)?.text || '—')))))), t('compare.title'));
  const verdicts = h('ul', { class: 'list', id: 'compare-verdicts' });
  box.append(verdicts, grid);
  client.get(`ServiceRequest/${sr.id}/$opinions`).then((p) => {
    for (const c of (p.parameter || []).filter((x) => x.name === 'comparison')) {
      const part = Object.fromEntries((c.part || []).filter((x) => x.valueCode).map((x) => [x.name, x.valueCode]));
      const items = (name) => (c.part || []).filter((x) => x.name === name).map((x) => text(x.part?.find((y) => y.name === 'concept')?.valueCodeableConcept)).filter(Boolean);
      const agree = part.verdict === 'agree';
      const shared = items('shared');
      const differing = items('differing');
      verdicts.append(h('li', { class: agree ? 'agree' : 'differ' }, h('strong', {}, t('aspect.' + part.aspect, null, part.aspect)), ': ', t('verdict.' + part.verdict, null, part.verdict),
        shared.length ? h('div', { class: 'muted' }, t('compare.shared', { items: shared.join('; ') })) : null,
        differing.length ? h('div', { class: 'muted' }, t('compare.differing', { items: differing.join('; ') })) : null));
    }
  }).catch(() => { /* the side-by-side view stands alone */ });
  return box;
}

// threadView shows the follow-up messages of one Task and lets this side
// write: the specialist asks, the patient answers.
export function threadView(client, task, messages, self, role, onSent, selfName) {
  const sorted = [...messages].sort((a, b) => (a.sent || '').localeCompare(b.sent || ''));
  const id = uid('thread');
  const viewer = h('div', { class: 'thread-viewer' });
  const payloadView = (p) => {
    if (p.contentString) return h('div', {}, p.contentString);
    const r = p.contentReference?.reference;
    if (r?.startsWith('DocumentReference/')) {
      return h('div', { class: 'row' }, h('span', {}, '📎 ', p.contentReference.display || t('doc.untitled')),
        h('button', { type: 'button', class: 'secondary', onclick: async () => {
          try {
            const d = await client.get(r);
            const att = d.content?.[0]?.attachment || {};
            await showDocument(client, viewer, { url: att.url, contentType: att.contentType, title: d.description || att.title || p.contentReference.display });
          } catch (e) { viewer.replaceChildren(errorBox(e)); }
        } }, t('doc.view')));
    }
    return h('div', {}, p.contentAttachment?.title || p.contentReference?.display || r || '');
  };
  const item = (m) => h('li', { class: m.sender?.reference === self ? 'mine' : 'theirs' },
    h('div', { class: 'muted' }, m.sender?.reference === self ? t('thread.you') : m.sender ? (m.sender.display || m.sender.reference || '') : t('thread.service'), ' · ', fmtDateTime(m.sent)),
    (m.payload || []).map(payloadView));
  const list = h('ol', { class: 'thread', 'aria-labelledby': id }, sorted.map(item));
  const last = sorted.filter((m) => m.sender?.reference !== self).pop();
  const canWrite = role === 'specialist' ? !['completed', 'rejected', 'cancelled', 'failed'].includes(task.status) : !!last;
  const out = h('div');
  let form = null;
  if (canWrite && !['cancelled', 'rejected', 'failed'].includes(task.status)) {
    const box = h('textarea', { required: true, class: 'message' });
    // the patient may answer with a file: a result or document the
    // specialist asked for joins the record (and the package, when the
    // Consent releases it)
    const file = role === 'patient' ? h('input', { type: 'file', class: 'attach', accept: '.pdf,.jpg,.jpeg,.png,.dcm,application/pdf,image/jpeg,image/png,application/dicom' }) : null;
    form = h('form', { class: 'reply', onsubmit: async (e) => {
      e.preventDefault();
      if (!box.value.trim()) { box.focus(); return; }
      const recipient = role === 'specialist' ? task.for : task.owner;
      const msg = {
        resourceType: 'Communication', status: 'completed',
        basedOn: [{ reference: 'Task/' + task.id }], partOf: [{ reference: 'Task/' + task.id }],
        subject: task.for, sender: selfName ? { reference: self, display: selfName } : { reference: self }, recipient: [recipient], sent: new Date().toISOString(),
        payload: [{ contentString: box.value.trim() }],
      };
      if (last && role === 'patient') msg.inResponseTo = [{ reference: 'Communication/' + last.id }];
      try {
        const f = file?.files?.[0];
        if (f) {
          out.replaceChildren(h('p', { role: 'status' }, t('upload.sending', { name: f.name })));
          const doc = await uploadFile(client, task.for.reference, f, { title: f.name, type: '11502-2' });
          msg.payload.push({ contentReference: { reference: 'DocumentReference/' + doc.id, display: f.name } });
        }
        await client.post('Communication', msg);
        if (onSent) await onSent(msg);
        list.append(item(msg));
        box.value = '';
        if (file) file.value = '';
        out.replaceChildren(h('p', { class: 'success', role: 'status' }, t('thread.sent')));
        announce(t('thread.sent'));
      } catch (err) { out.replaceChildren(errorBox(err)); }
    } }, field(role === 'specialist' ? t('thread.ask') : t('thread.answer'), box), file ? field(t('thread.attach'), file, t('upload.file.hint')) : null,
    h('button', { type: 'submit' }, role === 'specialist' ? t('thread.askbutton') : t('thread.send')));
  }
  return h('div', { class: 'thread-box' }, h('h3', { id }, t('thread.title')), sorted.length ? list : h('p', { class: 'muted' }, t('thread.none')), viewer, form, out);
}

export const mediaOf = (f) => (f.type && f.type !== 'application/octet-stream' ? f.type : /\.dcm$/i.test(f.name) ? 'application/dicom' : /\.pdf$/i.test(f.name) ? 'application/pdf' : /\.png$/i.test(f.name) ? 'image/png' : 'image/jpeg');

// uploadFile files one file into the patient's record with $import and
// returns its DocumentReference; onProgress(loaded, total) follows the
// upload (XMLHttpRequest reports upload progress; fetch does not).
export function uploadFile(client, patient, f, meta, onProgress) {
  const q = new URLSearchParams({ title: meta.title || f.name, type: meta.type || '34133-9' });
  if (meta.date) q.set('date', meta.date);
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('POST', client.url(`${patient}/$import?` + q));
    x.setRequestHeader('Authorization', 'Bearer ' + client.token);
    x.setRequestHeader('Content-Type', mediaOf(f));
    x.setRequestHeader('Accept', 'application/fhir+json');
    if (onProgress) x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    x.onload = () => {
      let body = null;
      try { body = JSON.parse(x.responseText); } catch { /* not JSON */ }
      if (x.status === 200) {
        const doc = (body?.entry || []).map((e) => e.resource).find((r) => r?.resourceType === 'DocumentReference');
        return doc ? resolve(doc) : reject(new Error(t('upload.network')));
      }
      const msg = (body?.issue || []).map((i) => i.details?.text || i.diagnostics).filter(Boolean).join('; ');
      reject(new Error(msg || String(x.status)));
    };
    x.onerror = () => reject(new Error(t('upload.network')));
    x.send(f);
  });
}

export { fmtDate };
