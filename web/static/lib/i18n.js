// Every string the apps show, in one place. English first; Hindi covers the
// screens a patient sees most; a missing translation falls back to English.
// "en-XA" is a pseudo-locale that makes every string about 60% longer (as
// Hindi often is), for checking that layouts survive longer text.

const en = {
  skip: 'Skip to content', loading: 'Loading…', language: 'Language', signout: 'Sign out', next: 'Next', back: 'Back',
  'nav.label': 'Main', 'table.label': 'Table', 'error.title': 'Something went wrong.',
  'signin.title': 'Sign in', 'signin.button': 'Sign in',
  'signin.patient': 'Sign in to see your health record from all your hospitals and clinics in one place, and to ask specialists for a second opinion.',
  'signin.specialist': 'Sign in to see the second-opinion requests addressed to your organisation.',
  'patient.title': 'My health record', 'patient.notpatient': 'This app is for patients: the account you signed in with is not a patient.',
  'specialist.title': 'Second-opinion workspace',
  'nav.record': 'My record', 'nav.sources': 'Sources & uploads', 'nav.ask': 'Ask for an opinion', 'nav.requests': 'My requests', 'nav.access': 'Who saw my record', 'nav.inbox': 'Inbox',
  'record.title': 'Health record of {name}', 'record.abnormal': '{n} of your results are outside the usual range. They are marked below; a doctor can tell you what they mean for you.',
  'record.conditions': 'Active conditions', 'record.medications': 'Medications', 'record.allergies': 'Allergies', 'record.labs': 'Lab results',
  'record.documents': 'Documents and images', 'record.timeline': 'Timeline', 'record.none': 'Nothing recorded.', 'record.nodocs': 'No documents yet.',
  since: 'since {date}',
  'lab.test': 'Test', 'lab.value': 'Result', 'lab.date': 'Date', 'lab.flag': 'Flag', 'lab.normal': 'Normal',
  'flag.H': 'High', 'flag.L': 'Low', 'flag.HH': 'Critically high', 'flag.LL': 'Critically low', 'flag.A': 'Abnormal', 'flag.AA': 'Critically abnormal', 'flag.HU': 'Very high', 'flag.LU': 'Very low',
  'tl.encounter': 'Visit', 'tl.condition': 'Diagnosis', 'tl.procedure': 'Procedure', 'tl.result': 'Result', 'tl.immunization': 'Vaccination', 'tl.document': 'Document', 'tl.medication': 'Prescription', 'tl.report': 'Report',
  'doc.untitled': 'Document', 'doc.view': 'View',
  'viewer.loading': 'Opening the document…', 'viewer.close': 'Close', 'viewer.download': 'Download', 'viewer.frame': 'Document: {title}', 'viewer.image': 'Image',
  'viewer.noinline': 'This file cannot be shown here; download it to open it.', 'viewer.region': 'Viewer: {title}', 'viewer.nodicom': 'This scan cannot be shown here ({why}); download it to open it in a DICOM viewer.',
  'sources.title': 'Sources and uploads',
  'pull.title': 'Get my records', 'pull.explain': 'Fetch your records from the hospitals and clinics connected to this service. Each fact is kept once, whichever place holds it.',
  'pull.button': 'Get my records now', 'pull.progress': 'Progress of fetching your records', 'pull.started': 'Asking your hospitals and clinics…',
  'pull.running': 'Fetching: {progress}', 'pull.done': 'Your records are up to date.', 'pull.failed': 'Fetching failed ({status}).', 'pull.ok': 'done',
  'pull.counts': '{fetched} items fetched: {created} new, {updated} updated, {duplicates} already known from another place',
  'pull.reconnect': 'This place no longer accepts your sign-in. Connect it again above.',
  'connect.title': 'Places that need your own sign-in', 'connect.explain': 'Some hospitals and clinics share your records only when you sign in to their patient portal yourself. Connect them once; after that, “Get my records” fetches from them too. You can disconnect at any time.',
  'connect.none': 'No place here needs your own sign-in.', 'connect.button': 'Connect {title}', 'connect.reconnect': 'Connect {title} again', 'connect.disconnect': 'Disconnect {title}',
  'connect.status.not-connected': 'Not connected', 'connect.status.connected': 'Connected', 'connect.status.reconnect': 'Needs you to sign in again', 'connect.since': 'Connected on {date}',
  'connect.going': 'Taking you to the sign-in page of {title}…', 'connect.done': '{title} is connected. Press “Get my records now” to fetch from it.',
  'connect.denied': 'You did not sign in at {title}: nothing was connected.', 'connect.failed': 'Connecting {title} did not work. Try again later.',
  'connect.disconnected': '{title} is disconnected. Records already fetched from it stay in your record.', 'connect.disabled': 'Connecting places is switched off on this service.',
  'upload.title': 'Upload a report, scan, prescription or lab result', 'upload.explain': 'PDF, JPEG, PNG or DICOM files. They join your record, and you decide who sees them.',
  'upload.file': 'File', 'upload.file.hint': 'PDF, JPEG, PNG or DICOM', 'upload.titlefield': 'Title', 'upload.title.hint': 'For example: ECG report, March', 'upload.type': 'What is it?', 'upload.date': 'Date of the document',
  'upload.button': 'Upload', 'upload.progress': 'Upload progress', 'upload.sending': 'Uploading {name}…', 'upload.done': '“{title}” is now in your record.',
  'upload.nofile': 'Choose a file first.', 'upload.network': 'The upload was interrupted. Check your connection and try again.',
  'doctype.pathology': 'Pathology report', 'doctype.lab': 'Lab result', 'doctype.imaging': 'Scan or imaging report', 'doctype.prescription': 'Prescription', 'doctype.discharge': 'Discharge summary', 'doctype.consult': 'Doctor’s letter', 'doctype.other': 'Other',
  'ask.title': 'Ask for a second opinion', 'ask.step': 'Step {n} of {of}', 'ask.specialty': 'Which specialty?', 'ask.question': 'Your question',
  'ask.question.hint': 'In your own words: what would you like the specialist to tell you?', 'ask.noquestion': 'Write your question first.',
  'ask.specialists': 'Which specialists?', 'ask.noorgs': 'No specialists are available.', 'ask.nospecialist': 'Choose at least one specialist.',
  'ask.shareexplain': 'This is exactly what each specialist will receive. You can leave out documents, a period of time or sensitive information for each of them. Nothing is shared until you press “Share and ask”.',
  'ask.grant': 'Share and ask', 'ask.sending': 'Sending your request…', 'ask.sent': 'Your request was sent to {n} specialist(s).', 'ask.follow': 'Follow your requests',
  'spec.cardiology': 'Heart (cardiology)', 'spec.endocrinology': 'Hormones and diabetes (endocrinology)', 'spec.nephrology': 'Kidneys (nephrology)', 'spec.neurology': 'Brain and nerves (neurology)', 'spec.oncology': 'Cancer (oncology)', 'spec.orthopaedics': 'Bones and joints (orthopaedics)',
  'share.title': 'What {name} will receive', 'share.count': '{n} items of your record.', 'share.withheld': '{n} left out', 'share.docs': 'Documents', 'share.nodocs': 'No documents.',
  'coverage.covered': 'Covered by your insurance', 'coverage.not-covered': 'Not covered by your insurance', 'coverage.unknown': 'Your insurer could not say whether it is covered',
  'coverage.no-coverage': 'No insurance on file', 'coverage.no-payer': 'Your insurer is not connected: ask them whether it is covered',
  'coverage.innetwork': 'in network.', 'coverage.outnetwork': 'out of network.', 'coverage.copay': 'You pay {amount}.',
  'preauth.approved': 'Pre-authorisation approved.', 'preauth.pending': 'Pre-authorisation requested, pending.', 'preauth.denied': 'Pre-authorisation denied.', 'preauth.unknown': 'Pre-authorisation: unknown.', 'preauth.required': 'Needs pre-authorisation.',
  'share.narrow': 'Leave something out', 'share.updating': 'Asking the gateway what each specialist would receive…',
  'share.exact': 'This is what the gateway will send each specialist, as it stands now.', 'share.excludedocs': 'Documents to leave out', 'share.excludedoc': 'Leave out “{title}”',
  'share.excludeperiod': 'Leave out a period', 'share.from': 'From', 'share.to': 'To', 'share.excludelabels': 'Leave out sensitive information',
  'label.PSY': 'Mental health', 'label.ETH': 'Alcohol and drug use', 'label.HIV': 'HIV', 'label.STD': 'Sexually transmitted infections', 'label.SEX': 'Sexual and reproductive health',
  'type.Patient': 'Your details', 'type.Condition': 'Diagnoses', 'type.Observation': 'Results and measurements', 'type.MedicationRequest': 'Prescriptions', 'type.MedicationStatement': 'Medications',
  'type.AllergyIntolerance': 'Allergies', 'type.Procedure': 'Procedures', 'type.Immunization': 'Vaccinations', 'type.Encounter': 'Visits', 'type.DocumentReference': 'Documents',
  'type.DiagnosticReport': 'Reports', 'type.Provenance': 'Where each item came from', 'type.Binary': 'Files', 'type.Bundle': 'Documents', 'type.Task': 'Requests', 'type.Consent': 'Permissions',
  'type.Composition': 'Documents', 'type.Coverage': 'Insurance', 'type.Communication': 'Messages', 'type.ServiceRequest': 'Requests', 'type.Organization': 'Organisations', 'type.Practitioner': 'Doctors',
  'requests.title': 'My requests', 'requests.none': 'You have not asked for a second opinion yet.', 'requests.request': 'Second opinion', 'requests.question': 'Your question:',
  'requests.asked': 'Asked on {date}', 'requests.reason': 'Reason:',
  'status.requested': 'Waiting for the specialist', 'status.received': 'Received', 'status.accepted': 'Accepted', 'status.in-progress': 'Being reviewed', 'status.on-hold': 'Waiting for your answer',
  'status.completed': 'Opinion ready', 'status.rejected': 'Declined', 'status.cancelled': 'Cancelled', 'status.failed': 'Could not be done',
  'revoke.button': 'Stop sharing with {name}', 'revoke.confirm': 'Stop sharing your record with {name}? They will no longer see anything of it.', 'revoke.done': '{name} can no longer see your record.', 'revoke.already': 'Not shared any more.',
  'thread.title': 'Questions and answers', 'thread.none': 'No messages.', 'thread.you': 'You', 'thread.service': 'This service (automatic note)', 'thread.answer': 'Your answer', 'thread.send': 'Send answer',
  'thread.ask': 'Ask the patient (a missing test or document, a question)', 'thread.askbutton': 'Send question', 'thread.sent': 'Message sent.', 'thread.attach': 'Attach a result or document (optional)',
  'opinion.from': 'Opinion of {name}', 'opinion.interim': 'interim', 'opinion.conclusion': 'Conclusion', 'opinion.yours': 'Your opinion', 'opinion.write': 'Write your opinion',
  'opinion.agreement': 'The current diagnosis', 'opinion.alternatives': 'Other diagnoses to consider', 'opinion.plan': 'Recommended plan', 'opinion.tests': 'Further tests',
  'opinion.urgency': 'Urgency', 'opinion.comment': 'Anything else', 'opinion.onePerLine': 'One per line.', 'opinion.submit': 'Sign and send the opinion',
  'opinion.needplan': 'Write the recommended plan.', 'opinion.sent': 'Your opinion was sent.',
  'agreement.agree': 'I agree with it', 'agreement.partially-agree': 'I partly agree', 'agreement.disagree': 'I disagree', 'agreement.cannot-assess': 'I cannot assess it',
  'urgency.routine': 'Routine', 'urgency.urgent': 'Urgent', 'urgency.asap': 'As soon as possible', 'urgency.stat': 'Immediately',
  'section.question': 'Question', 'section.agreement': 'Current diagnosis', 'section.alternatives': 'Other diagnoses', 'section.plan': 'Recommended plan', 'section.tests': 'Further tests', 'section.urgency': 'Urgency', 'section.comment': 'Comments',
  'compare.title': 'The opinions side by side', 'compare.section': 'Topic', 'compare.shared': 'Both: {items}', 'compare.differing': 'Only one of them: {items}',
  'error.forbidden': 'You cannot see this any more: the patient may have stopped sharing it with you.', 'access.times': '{n} times',
  'aspect.agreement': 'Current diagnosis', 'aspect.diagnosis': 'Other diagnoses', 'aspect.plan': 'Plan', 'aspect.tests': 'Further tests', 'aspect.urgency': 'Urgency',
  'verdict.agree': 'the specialists agree', 'verdict.differ': 'the specialists differ', 'verdict.single': 'only one specialist addressed it',
  'access.title': 'Who saw my record', 'access.explain': 'Every time someone looks at or changes your record, it is written down here. Nobody can remove these entries.',
  'access.none': 'Nobody has looked at your record yet.', 'access.refused': 'refused', 'access.under': 'allowed by your permission', 'access.someone': 'Someone',
  'access.sentence': '{who}{org} {action} {what}', 'access.record': 'your record',
  'access.you': 'You', 'access.who': 'Who', 'access.all': 'Every access, newest first', 'access.summary': '{n} times, last on {last}', 'access.refusedn': '{n} refused',
  'verb.read': 'looked at', 'verb.vread': 'looked at', 'verb.search-type': 'searched', 'verb.search-system': 'searched', 'verb.create': 'added', 'verb.update': 'changed',
  'verb.patch': 'changed', 'verb.delete': 'deleted', 'verb.history-instance': 'looked at the history of', 'verb.history-type': 'looked at the history of',
  'verb.transaction': 'wrote', 'verb.batch': 'wrote', 'verb.$everything': 'read everything in', 'verb.$summary': 'read the summary of', 'verb.$import': 'added a document to',
  'verb.$pull': 'fetched records into', 'verb.$second-opinion': 'asked for an opinion on', 'verb.$access-log': 'looked at who saw', 'verb.$opinion': 'gave an opinion on', 'verb.$opinions': 'compared opinions on',
  'action.R': 'looked at', 'action.C': 'added', 'action.U': 'changed', 'action.D': 'deleted', 'action.E': 'used',
  'inbox.title': 'Requests for {org}', 'inbox.open': 'Open ({n})', 'inbox.closed': 'Closed ({n})', 'inbox.empty': 'No open requests.', 'inbox.patient': 'Patient', 'inbox.received': 'Received on {date}',
  'case.title': 'Case of {name}', 'case.question': 'The patient’s question', 'case.specialty': 'Specialty asked: {s}', 'case.summary': 'Case summary',
  'case.nosummary': 'No case summary in this package.', 'case.documents': 'Documents and images', 'case.fullrecord': 'Everything shared with you',
  'case.decide': 'Accept or decline', 'case.accept': 'Accept the request', 'case.decline': 'Decline…', 'case.declinereason': 'Why do you decline? (the patient sees this)', 'case.declinebutton': 'Decline the request',
  'case.moved': 'The request is now: {status}', 'case.notfound': 'There is no such request.',
};

const hi = {
  skip: 'सामग्री पर जाएँ', loading: 'लोड हो रहा है…', language: 'भाषा', signout: 'साइन आउट', next: 'आगे', back: 'पीछे',
  'error.title': 'कुछ गलत हो गया।', 'signin.title': 'साइन इन करें', 'signin.button': 'साइन इन करें',
  'signin.patient': 'अपने सभी अस्पतालों और क्लीनिकों का स्वास्थ्य रिकॉर्ड एक जगह देखने और विशेषज्ञों से दूसरी राय माँगने के लिए साइन इन करें।',
  'signin.specialist': 'अपने संगठन को भेजे गए दूसरी राय के अनुरोध देखने के लिए साइन इन करें।',
  'patient.title': 'मेरा स्वास्थ्य रिकॉर्ड', 'specialist.title': 'दूसरी राय कार्यस्थान',
  'nav.record': 'मेरा रिकॉर्ड', 'nav.sources': 'स्रोत और अपलोड', 'nav.ask': 'राय माँगें', 'nav.requests': 'मेरे अनुरोध', 'nav.access': 'मेरा रिकॉर्ड किसने देखा', 'nav.inbox': 'इनबॉक्स',
  'record.title': '{name} का स्वास्थ्य रिकॉर्ड', 'record.abnormal': 'आपके {n} परिणाम सामान्य सीमा से बाहर हैं। वे नीचे चिह्नित हैं; डॉक्टर बता सकते हैं कि आपके लिए उनका क्या अर्थ है।',
  'record.conditions': 'वर्तमान बीमारियाँ', 'record.medications': 'दवाइयाँ', 'record.allergies': 'एलर्जी', 'record.labs': 'जाँच के परिणाम',
  'record.documents': 'दस्तावेज़ और चित्र', 'record.timeline': 'समयरेखा', 'record.none': 'कुछ दर्ज नहीं है।', 'record.nodocs': 'अभी कोई दस्तावेज़ नहीं।', since: '{date} से',
  'lab.test': 'जाँच', 'lab.value': 'परिणाम', 'lab.date': 'तारीख', 'lab.flag': 'संकेत', 'lab.normal': 'सामान्य',
  'flag.H': 'अधिक', 'flag.L': 'कम', 'flag.HH': 'गंभीर रूप से अधिक', 'flag.LL': 'गंभीर रूप से कम', 'flag.A': 'असामान्य',
  'doc.view': 'देखें', 'viewer.close': 'बंद करें', 'viewer.download': 'डाउनलोड करें',
  'connect.title': 'वे जगहें जहाँ आपको स्वयं साइन इन करना है', 'connect.button': '{title} से जोड़ें', 'connect.disconnect': '{title} से अलग करें',
  'connect.status.not-connected': 'जुड़ा नहीं', 'connect.status.connected': 'जुड़ा हुआ', 'connect.status.reconnect': 'फिर से साइन इन करें',
  'sources.title': 'स्रोत और अपलोड', 'pull.title': 'मेरे रिकॉर्ड लाएँ', 'pull.button': 'अभी मेरे रिकॉर्ड लाएँ', 'pull.done': 'आपके रिकॉर्ड अद्यतन हैं।',
  'upload.title': 'रिपोर्ट, स्कैन, पर्चा या जाँच परिणाम अपलोड करें', 'upload.file': 'फ़ाइल', 'upload.titlefield': 'शीर्षक', 'upload.type': 'यह क्या है?', 'upload.date': 'दस्तावेज़ की तारीख', 'upload.button': 'अपलोड करें',
  'ask.title': 'दूसरी राय माँगें', 'ask.step': 'चरण {n} / {of}', 'ask.specialty': 'कौन सी विशेषज्ञता?', 'ask.question': 'आपका प्रश्न', 'ask.specialists': 'कौन से विशेषज्ञ?',
  'ask.shareexplain': 'हर विशेषज्ञ को ठीक यही मिलेगा। आप हर एक के लिए दस्तावेज़, कोई समय-अवधि या संवेदनशील जानकारी हटा सकते हैं। “साझा करें और पूछें” दबाने तक कुछ भी साझा नहीं होता।',
  'ask.grant': 'साझा करें और पूछें', 'share.title': '{name} को क्या मिलेगा', 'share.narrow': 'कुछ हटाएँ',
  'requests.title': 'मेरे अनुरोध', 'status.requested': 'विशेषज्ञ की प्रतीक्षा', 'status.completed': 'राय तैयार है', 'status.on-hold': 'आपके उत्तर की प्रतीक्षा',
  'revoke.button': '{name} के साथ साझा करना बंद करें', 'thread.title': 'प्रश्न और उत्तर', 'thread.send': 'उत्तर भेजें', 'thread.answer': 'आपका उत्तर',
  'compare.title': 'राय आमने-सामने', 'access.title': 'मेरा रिकॉर्ड किसने देखा',
  'access.explain': 'जब भी कोई आपका रिकॉर्ड देखता या बदलता है, वह यहाँ लिखा जाता है। इन प्रविष्टियों को कोई हटा नहीं सकता।',
};

// pseudo makes a string ~60% longer, keeping {placeholders} intact.
const pseudo = (s) => '[' + s.split(/(\{\w+\})/).map((p) => (p.startsWith('{') ? p : p.replace(/\S+/g, (w) => w + '~'.repeat(Math.ceil(w.length * 0.6))))).join('') + ']';

export const languages = [['en', 'English'], ['hi', 'हिन्दी']];

let current = pick();

function pick() {
  try {
    const saved = localStorage.getItem('fhirgate.lang');
    if (saved) return saved;
  } catch { /* storage blocked */ }
  return (navigator.language || 'en').toLowerCase().startsWith('hi') ? 'hi' : 'en';
}

export function setLang(l) {
  current = l === 'hi' || l === 'en-XA' ? l : 'en';
  try { localStorage.setItem('fhirgate.lang', current); } catch { /* storage blocked */ }
}
export const lang = () => current;

// t looks a string up and fills its {placeholders}; fallback (else the key)
// when no language has it.
export function t(key, vars, fallback) {
  let s = (current === 'hi' && hi[key]) || en[key];
  if (s === undefined) return fallback !== undefined ? fallback : key;
  if (current === 'en-XA') s = pseudo(s);
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] !== undefined ? String(vars[k]) : m)) : s;
}

export const strings = { en, hi };
