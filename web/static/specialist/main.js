// The specialist workspace: the inbox of second-opinion requests addressed
// to my organisation, the case (question, case summary, documents), accept
// or decline, follow-up questions, the structured opinion.
import { t } from '../lib/i18n.js';
import { boot, h, render, loading, section, badge, field, fmtDate, showDocument, announce, errorBox, uid, safeNarrative } from '../lib/ui.js';
import { text, dateOf } from '../lib/smart.js';
import { statusLabel, threadView, REQUISITION, opinionView, taskOpinions, docTypeLabel } from '../lib/care.js';

let me = ''; // Practitioner/x
let org = ''; // Organization/y
let orgName = '';
let orgReady = Promise.resolve();

boot({
  app: 'specialist',
  scope: 'openid fhirUser user/*.cruds',
  title: () => t('specialist.title'),
  nav: [['#/inbox', 'nav.inbox']],
  start: async ({ client, session }) => {
    me = session.fhirUser;
    // who I work for: asked once, in parallel with the first screen's data
    orgReady = client.search(`PractitionerRole?practitioner=${encodeURIComponent(me)}&active=true&_include=PractitionerRole:organization`).then((rs) => {
      const role = rs.find((r) => r.resourceType === 'PractitionerRole' && r.organization);
      org = role?.organization?.reference || '';
      orgName = rs.find((r) => r.resourceType === 'Organization' && 'Organization/' + r.id === org)?.name || org;
      document.getElementById('who').prepend(h('span', { class: 'org' }, orgName));
    }).catch(() => { /* the inbox still lists what the gateway gives */ });
  },
  routes: { '': inbox, inbox, case: caseView },
});

// nameOf is the signed-in specialist's name, for the messages they send.
const nameOf = () => { try { return JSON.parse(sessionStorage.getItem('fhirgate.specialist')).name || ''; } catch { return ''; } };

const isReferral = (task) => task.groupIdentifier?.system === REQUISITION;
const closed = ['completed', 'rejected', 'cancelled', 'failed'];

async function inbox({ client }) {
  loading();
  // the gateway gives a specialist only the requests of its own clinic
  const [all] = await Promise.all([client.search('Task?code=fulfill&_count=200&_sort=-authored-on'), orgReady]);
  const tasks = all.filter((x) => isReferral(x) && (!org || x.owner?.reference === org));
  const patients = new Map();
  await Promise.all([...new Set(tasks.map((x) => x.for?.reference))].map(async (p) => {
    try { patients.set(p, await client.get(p)); } catch { /* withheld: shown by reference */ }
  }));
  const open = tasks.filter((x) => !closed.includes(x.status));
  const done = tasks.filter((x) => closed.includes(x.status));
  const row = (task) => {
    const p = patients.get(task.for?.reference);
    const name = p?.name?.[0] ? [...(p.name[0].given || []), p.name[0].family].join(' ') : t('inbox.patient');
    const age = p?.birthDate ? Math.floor((Date.now() - new Date(p.birthDate)) / 31557600000) : '';
    return h('li', { 'data-task': task.id }, h('div', { class: 'row spread' },
      h('a', { href: '#/case/' + task.id }, h('strong', {}, name), age ? `, ${age}` : ''), badge(statusLabel(task.status), task.status === 'requested' ? 'warn' : 'info')),
    h('div', {}, task.description || ''), h('div', { class: 'muted' }, t('inbox.received', { date: fmtDate(task.authoredOn) })));
  };
  render(h('h1', {}, t('inbox.title', { org: orgName || org })),
    section(t('inbox.open', { n: open.length }), open.length ? h('ul', { class: 'list', id: 'inbox' }, open.map(row)) : h('p', { class: 'muted' }, t('inbox.empty'))),
    done.length ? section(t('inbox.closed', { n: done.length }), h('ul', { class: 'list' }, done.map(row))) : null);
}

const caseCodes = 'https://fhirgate.org/fhir/CodeSystem/case-summary';

async function caseView({ client }, id) {
  if (!/^[A-Za-z0-9\-.]{1,64}$/.test(id || '')) throw new Error(t('case.notfound'));
  loading();
  const task = await client.get('Task/' + id);
  const [sr, pkg, comms] = await Promise.all([
    task.focus?.reference ? client.get(task.focus.reference).catch(() => null) : null,
    client.get(task.input?.find((i) => i.valueReference?.reference?.startsWith('Bundle/'))?.valueReference.reference),
    client.search(`Communication?subject=${encodeURIComponent(task.for.reference)}&_count=200`).catch(() => []),
  ]);
  const entries = (pkg.entry || []).map((e) => e.resource).filter(Boolean);
  const comp = entries[0]?.resourceType === 'Composition' ? entries[0] : null;
  const patient = entries.find((r) => r.resourceType === 'Patient');
  const name = patient?.name?.[0] ? [...(patient.name[0].given || []), patient.name[0].family].join(' ') : '';
  const docs = entries.filter((r) => r.resourceType === 'DocumentReference');
  const viewer = h('div', { id: 'viewer' });
  const out = h('div', { id: 'case-status' });
  const thread = comms.filter((c) => (c.basedOn || []).concat(c.partOf || []).some((r) => r.reference === 'Task/' + task.id));
  const summarySections = (comp?.section || []).filter((s) => s.code?.coding?.some((c) => c.system === caseCodes));
  const otherSections = (comp?.section || []).filter((s) => !summarySections.includes(s));
  const opinion = (await taskOpinions(client, [task])).get(task.id);

  render(
    h('h1', {}, t('case.title', { name })),
    h('p', {}, badge(statusLabel(task.status), 'info'), ' ', h('span', { class: 'muted' }, t('inbox.received', { date: fmtDate(task.authoredOn) }))),
    section(t('case.question'), h('p', { id: 'question' }, task.description || sr?.note?.[0]?.text || ''), sr?.performerType ? h('p', { class: 'muted' }, t('case.specialty', { s: text(sr.performerType) })) : null),
    actions(client, task, out), out,
    section(t('case.summary'), summarySections.length ? summarySections.map((s) => h('div', { class: 'summary-section', 'data-section': s.code.coding.find((c) => c.system === caseCodes).code },
      h('h3', {}, s.title || text(s.code)), safeNarrative(s.text?.div))) : h('p', { class: 'muted' }, t('case.nosummary'))),
    section(t('case.documents'), docs.length ? h('ul', { class: 'list', id: 'documents' }, docs.map((d) => {
      const att = d.content?.[0]?.attachment || {};
      const title = d.description || att.title || text(d.type) || t('doc.untitled');
      return h('li', { class: 'row spread' }, h('div', {}, h('strong', {}, title), h('div', { class: 'muted' }, [docTypeLabel(d.type), fmtDate(d.context?.period?.start || d.date)].filter(Boolean).join(' · '))),
        att.url ? h('button', { type: 'button', class: 'secondary', onclick: () => showDocument(client, viewer, { url: att.url, contentType: att.contentType, title }) }, t('doc.view')) : null);
    })) : h('p', { class: 'muted' }, t('record.nodocs')), viewer),
    h('details', { class: 'card' }, h('summary', {}, t('case.fullrecord')), otherSections.map((s) => h('div', {}, h('h3', {}, s.title || text(s.code)), safeNarrative(s.text?.div)))),
    h('div', { class: 'card' }, threadView(client, task, thread, me, 'specialist', async () => {
      if (['accepted', 'in-progress'].includes(task.status)) {
        await client.patch('Task/' + task.id, [{ op: 'replace', path: '/status', value: 'on-hold' }]);
        task.status = 'on-hold';
      }
    }, nameOf())),
    opinion ? section(t('opinion.yours'), opinionView(opinion, orgName)) : (['accepted', 'in-progress', 'on-hold'].includes(task.status) ? opinionForm(client, task, pkg, sr, out) : null),
  );
}

// actions: accept, or decline with a reason.
function actions(client, task, out) {
  if (!['requested', 'received'].includes(task.status)) return null;
  const reason = h('textarea', { id: 'decline-reason' });
  const move = async (status, statusReason) => {
    const ops = [{ op: 'replace', path: '/status', value: status }];
    if (statusReason) ops.push({ op: 'add', path: '/statusReason', value: { text: statusReason } });
    try {
      await client.patch('Task/' + task.id, ops);
      announce(t('case.moved', { status: statusLabel(status) }));
      location.hash = '#/case/' + task.id + '/' + Date.now();
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  return section(t('case.decide'),
    h('div', { class: 'row' }, h('button', { type: 'button', id: 'accept', onclick: () => move('accepted') }, t('case.accept'))),
    h('details', {}, h('summary', {}, t('case.decline')),
      h('form', { onsubmit: (e) => { e.preventDefault(); if (!reason.value.trim()) { reason.focus(); return; } move('rejected', reason.value.trim()); } },
        field(t('case.declinereason'), reason), h('button', { type: 'submit', class: 'danger' }, t('case.declinebutton')))));
}

// opinionForm writes the structured opinion: a document Bundle whose
// Composition has the sections of the gateway's second-opinion profile,
// submitted with Task/$opinion (which completes the Task).
function opinionForm(client, task, pkg, sr, out) {
  const agreement = h('select', { id: 'op-agreement' }, ['agree', 'partially-agree', 'disagree', 'cannot-assess'].map((v) => h('option', { value: v }, t('agreement.' + v))));
  const alternatives = h('textarea', { id: 'op-alternatives' });
  const plan = h('textarea', { id: 'op-plan', required: true });
  const tests = h('textarea', { id: 'op-tests' });
  const urgency = h('select', { id: 'op-urgency' }, ['routine', 'urgent', 'asap'].map((v) => h('option', { value: v }, t('urgency.' + v))));
  const comment = h('textarea', { id: 'op-comment' });
  const err = h('div');
  const form = h('form', { id: 'opinion', onsubmit: async (e) => {
    e.preventDefault();
    if (!plan.value.trim()) { err.replaceChildren(errorBox(new Error(t('opinion.needplan')))); plan.focus(); return; }
    const doc = opinionDocument(task, pkg, sr, {
      agreement: agreement.value, alternatives: lines(alternatives.value), plan: lines(plan.value), tests: lines(tests.value),
      urgency: urgency.value, comment: comment.value.trim(),
    });
    try {
      if (task.status === 'on-hold') await client.patch('Task/' + task.id, [{ op: 'replace', path: '/status', value: 'in-progress' }]);
      await client.post('Task/' + task.id + '/$opinion', doc);
      announce(t('opinion.sent'));
      location.hash = '#/case/' + task.id + '/' + Date.now();
    } catch (ex) { err.replaceChildren(errorBox(ex)); }
  } },
  field(t('opinion.agreement'), agreement), field(t('opinion.alternatives'), alternatives, t('opinion.onePerLine')),
  field(t('opinion.plan'), plan, t('opinion.onePerLine')), field(t('opinion.tests'), tests, t('opinion.onePerLine')),
  field(t('opinion.urgency'), urgency), field(t('opinion.comment'), comment), err, h('button', { type: 'submit' }, t('opinion.submit')));
  void out;
  return section(t('opinion.write'), form);
}

const lines = (s) => s.split('\n').map((x) => x.trim()).filter(Boolean);

function opinionDocument(task, pkg, sr, o) {
  const pt = task.for;
  const entries = [];
  let n = 0;
  const add = (res) => { const fullUrl = `urn:uuid:${crypto.randomUUID()}`; n++; entries.push({ fullUrl, resource: res }); return fullUrl; };
  const OP = 'https://fhirgate.org/fhir/CodeSystem/second-opinion';
  const div = (parts) => ({ status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">' + parts.map((p) => '<p>' + escapeXML(p) + '</p>').join('') + '</div>' });
  const section = (code, title, parts, refs) => {
    const s = { title, code: { coding: [{ system: OP, code }] }, text: div(parts.length ? parts : ['—']) };
    if (refs?.length) s.entry = refs.map((r) => ({ reference: r }));
    return s;
  };
  const obs = (code, system, value) => ({ resourceType: 'Observation', status: 'final', subject: pt,
    code: { coding: [{ system: OP, code }] }, valueCodeableConcept: { coding: [{ system, code: value }] } });
  const proposal = (s) => ({ resourceType: 'ServiceRequest', status: 'draft', intent: 'proposal', subject: pt, code: { text: s } });
  const sections = [
    section('question', t('section.question'), [task.description || sr?.note?.[0]?.text || '']),
    section('agreement', t('section.agreement'), [t('agreement.' + o.agreement)], [add(obs('diagnosis-agreement', OP, o.agreement))]),
  ];
  if (o.alternatives.length) sections.push(section('alternatives', t('section.alternatives'), o.alternatives, o.alternatives.map((a) => add({ resourceType: 'Condition', subject: pt, code: { text: a } }))));
  sections.push(section('plan', t('section.plan'), o.plan, o.plan.map((p) => add(proposal(p)))));
  if (o.tests.length) sections.push(section('tests', t('section.tests'), o.tests, o.tests.map((x) => add(proposal(x)))));
  sections.push(section('urgency', t('section.urgency'), [t('urgency.' + o.urgency)], [add(obs('urgency', 'http://hl7.org/fhir/request-priority', o.urgency))]));
  if (o.comment) sections.push(section('comment', t('section.comment'), [o.comment]));
  const now = new Date().toISOString();
  const comp = {
    resourceType: 'Composition', status: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '11488-4', display: 'Consult note' }] },
    subject: pt, date: now, title: 'Second opinion',
    author: [{ reference: me }], attester: [{ mode: 'legal', time: now, party: { reference: me } }],
    event: [{ detail: [{ reference: 'Task/' + task.id }, { reference: 'Bundle/' + pkg.id }] }],
    section: sections,
  };
  void n;
  return { resourceType: 'Bundle', type: 'document', timestamp: now, identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${crypto.randomUUID()}` },
    entry: [{ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: comp }, ...entries] };
}

const escapeXML = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
void dateOf; void uid;
