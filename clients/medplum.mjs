// Medplum's MedplumClient (@medplum/core) against the gateway; see lib.mjs
// for the checks.
import { MedplumClient, OperationOutcomeError } from '@medplum/core';
import * as t from './lib.mjs';

// statuses records the HTTP status of every response, because
// MedplumClient's errors carry the OperationOutcome but not the status.
const statuses = [];
const medplum = new MedplumClient({
  baseUrl: `${t.base}/`,
  fhirUrlPath: `${t.base}/`, // the FHIR base is the gateway's root
  cacheTime: 0, // read what the server has, not a cached copy
  fetch: async (url, init) => {
    const res = await fetch(url, init);
    statuses.push(res.status);
    return res;
  },
});
medplum.setAccessToken(t.token);

await t.run('medplum', async (step) => {
  step('create');
  const created = await medplum.createResource(t.patient('Plum'));
  t.checkCreated(created, 'Patient');
  const id = created.id;

  step('read');
  const read = await medplum.readResource('Patient', id);
  t.equal(read.name?.[0]?.family, 'Plum', 'family read back');

  step('update');
  const updated = await medplum.updateResource({ ...read, active: false });
  t.equal(updated.meta?.versionId, '2', 'updated versionId');
  t.equal(updated.active, false, 'updated active');

  step('history');
  t.checkHistory(await medplum.readHistory('Patient', id));

  step('search with paging');
  const obsIds = [];
  for (let i = 0; i < t.OBSERVATIONS; i++) {
    const o = await medplum.createResource(t.observation(`Patient/${id}`, i));
    t.checkCreated(o, 'Observation');
    obsIds.push(o.id);
  }
  const found = [];
  let pages = 0;
  // searchResourcePages follows the next links
  for await (const page of medplum.searchResourcePages('Observation', { subject: `Patient/${id}`, _count: t.PAGE })) {
    pages++;
    t.equal(page.bundle?.type, 'searchset', 'search Bundle type');
    found.push(...page.map((r) => r.id));
  }
  t.checkPaging(found, pages, obsIds);

  step('transaction');
  const tx = t.checkTransaction(await medplum.executeBatch(t.transaction('PlumTx')));
  const txObs = await medplum.readResource('Observation', tx.observation);
  t.equal(txObs.subject?.reference, `Patient/${tx.patient}`, 'urn:uuid reference rewritten');

  step('$everything');
  t.checkEverything(await medplum.readPatientEverything(id), id, obsIds);

  step('error: read of an unknown id');
  try {
    await medplum.readResource('Patient', t.UNKNOWN);
  } catch (e) {
    t.check(e instanceof OperationOutcomeError, `error is ${e?.constructor?.name}, want OperationOutcomeError`);
    t.checkNotFound(statuses.at(-1), e.outcome);
    return;
  }
  throw new Error(`reading Patient/${t.UNKNOWN} succeeded`);
});
