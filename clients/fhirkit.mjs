// fhir-kit-client against the gateway; see lib.mjs for the checks.
import { Client } from 'fhir-kit-client';
import * as t from './lib.mjs';

const client = new Client({ baseUrl: t.base, bearerToken: t.token });

await t.run('fhir-kit-client', async (step) => {
  step('create');
  const created = await client.create({ resourceType: 'Patient', body: t.patient('Kit') });
  t.checkCreated(created, 'Patient');
  const id = created.id;

  step('read');
  const read = await client.read({ resourceType: 'Patient', id });
  t.equal(read.name?.[0]?.family, 'Kit', 'family read back');

  step('update');
  const updated = await client.update({ resourceType: 'Patient', id, body: { ...read, active: false } });
  t.equal(updated.meta?.versionId, '2', 'updated versionId');
  t.equal(updated.active, false, 'updated active');

  step('history');
  t.checkHistory(await client.history({ resourceType: 'Patient', id }));

  step('search with paging');
  const obsIds = [];
  for (let i = 0; i < t.OBSERVATIONS; i++) {
    const o = await client.create({ resourceType: 'Observation', body: t.observation(`Patient/${id}`, i) });
    t.checkCreated(o, 'Observation');
    obsIds.push(o.id);
  }
  const found = [];
  let pages = 0;
  let page = await client.search({ resourceType: 'Observation', searchParams: { subject: `Patient/${id}`, _count: t.PAGE } });
  while (page) {
    pages++;
    t.equal(page.type, 'searchset', 'search Bundle type');
    found.push(...(page.entry ?? []).map((e) => e.resource.id));
    page = await client.nextPage({ bundle: page });
  }
  t.checkPaging(found, pages, obsIds);

  step('transaction');
  const tx = t.checkTransaction(await client.transaction({ body: t.transaction('KitTx') }));
  const txObs = await client.read({ resourceType: 'Observation', id: tx.observation });
  t.equal(txObs.subject?.reference, `Patient/${tx.patient}`, 'urn:uuid reference rewritten');

  step('$everything');
  const everything = await client.operation({ name: '$everything', resourceType: 'Patient', id, method: 'GET' });
  t.checkEverything(everything, id, obsIds);

  step('error: read of an unknown id');
  try {
    await client.read({ resourceType: 'Patient', id: t.UNKNOWN });
  } catch (e) {
    t.checkNotFound(e.response?.status, e.response?.data);
    return;
  }
  throw new Error(`reading Patient/${t.UNKNOWN} succeeded`);
});
