// Shared by the client scripts: the environment, the test data, and the
// checks of what the gateway answers. The scripts only differ in how each
// client library is called.

export const base = env('FHIR_BASE');
export const token = env('FHIR_TOKEN');

// PAGE is the _count of the paged search; OBSERVATIONS is more than two
// pages' worth so that at least two next links are followed.
export const PAGE = 5;
export const OBSERVATIONS = 12;

// UNKNOWN is a well-formed id that no resource has.
export const UNKNOWN = 'no-such-patient-0';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
}

export function check(ok, what) {
  if (!ok) throw new Error(what);
}

export function equal(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  check(g === w, `${what}: got ${g}, want ${w}`);
}

// run runs the steps of one client, printing each, and exits non-zero with
// the failing step and the reason on the first mismatch or error.
export async function run(client, steps) {
  let current = 'start';
  const step = (name) => {
    current = name;
    console.log(`${client}: ${name}`);
  };
  try {
    await steps(step);
  } catch (e) {
    console.error(`${client}: FAILED at "${current}": ${e?.stack ?? e}`);
    process.exit(1);
  }
  console.log(`${client}: all checks passed`);
}

export function patient(family) {
  return { resourceType: 'Patient', active: true, name: [{ family, given: ['Test'] }], birthDate: '1970-01-01' };
}

export function observation(patientRef, i) {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: patientRef },
    effectiveDateTime: `2024-01-${String(i + 1).padStart(2, '0')}T08:00:00Z`,
    valueQuantity: { value: 60 + i, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

// checkCreated checks a freshly created resource.
export function checkCreated(r, type) {
  equal(r?.resourceType, type, 'created resourceType');
  check(typeof r.id === 'string' && r.id.length > 0, `created ${type} has no id`);
  equal(r.meta?.versionId, '1', 'created versionId');
}

// checkPaging checks the ids collected over the pages of a search for the
// OBSERVATIONS observations.
export function checkPaging(ids, pages, createdIds) {
  check(pages >= Math.ceil(OBSERVATIONS / PAGE), `search came in ${pages} pages, want at least ${Math.ceil(OBSERVATIONS / PAGE)}`);
  equal(new Set(ids).size, ids.length, 'no resource repeated across pages');
  equal([...ids].sort(), [...createdIds].sort(), 'ids found by the paged search');
}

// checkHistory checks the history of a resource created then updated once.
export function checkHistory(b) {
  equal(b?.resourceType, 'Bundle', 'history resourceType');
  equal(b.type, 'history', 'history Bundle type');
  equal(b.entry?.map((e) => e.resource?.meta?.versionId), ['2', '1'], 'history versions, newest first');
  equal(b.entry[1].resource.active, true, 'version 1 in history');
  equal(b.entry[0].resource.active, false, 'version 2 in history');
}

// transaction is a Bundle that creates a Patient and an Observation that
// refers to it by its urn:uuid.
export function transaction(family) {
  const pid = 'urn:uuid:3f0c6e0e-4a4b-4a52-9c51-6b9d5c1e0a01';
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: pid, resource: patient(family), request: { method: 'POST', url: 'Patient' } },
      {
        fullUrl: 'urn:uuid:3f0c6e0e-4a4b-4a52-9c51-6b9d5c1e0a02',
        resource: observation(pid, 0),
        request: { method: 'POST', url: 'Observation' },
      },
    ],
  };
}

// checkTransaction checks the response to transaction() and returns the
// ids the gateway assigned.
export function checkTransaction(b) {
  equal(b?.resourceType, 'Bundle', 'transaction response resourceType');
  equal(b.type, 'transaction-response', 'transaction response Bundle type');
  equal(b.entry?.length, 2, 'transaction response entries');
  const ids = b.entry.map((e, i) => {
    check(/^201/.test(e.response?.status ?? ''), `entry ${i} status ${e.response?.status}, want 201`);
    const m = /^(Patient|Observation)\/([^/]+)\/_history\/1$/.exec(e.response.location ?? '');
    check(m, `entry ${i} location ${e.response.location}, want Type/id/_history/1`);
    return m[2];
  });
  return { patient: ids[0], observation: ids[1] };
}

// checkEverything checks Patient/$everything of the patient with the
// OBSERVATIONS observations: the Patient and every Observation, once.
export function checkEverything(b, pid, observationIds) {
  equal(b?.resourceType, 'Bundle', '$everything resourceType');
  equal(b.type, 'searchset', '$everything Bundle type');
  const got = (b.entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`);
  check(got.includes(`Patient/${pid}`), `$everything lacks Patient/${pid}`);
  const obs = got.filter((r) => r.startsWith('Observation/')).sort();
  equal(obs, observationIds.map((id) => `Observation/${id}`).sort(), '$everything Observations');
}

// checkNotFound checks the error of reading an unknown id: a 404 with an
// OperationOutcome carrying a not-found error issue.
export function checkNotFound(status, body) {
  equal(status, 404, 'status of reading an unknown id');
  equal(body?.resourceType, 'OperationOutcome', 'error body resourceType');
  check(
    body.issue?.some((i) => i.severity === 'error' && i.code === 'not-found'),
    `OperationOutcome has no not-found error issue: ${JSON.stringify(body.issue)}`,
  );
}
