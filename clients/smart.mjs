// SMART's fhirclient through its Node adapter against the gateway, as a
// server-side app holding an access token; see lib.mjs for the checks.
import smart from 'fhirclient';
import * as t from './lib.mjs';

// The Node adapter works on the request and response of the app's own HTTP
// server (for the launch redirects and its session storage); this script
// has none, so it passes the minimal request it reads, and an in-memory
// storage. client() then builds a Client from a known token.
const session = new Map();
const storage = {
  get: async (k) => session.get(k),
  set: async (k, v) => session.set(k, v),
  unset: async (k) => session.delete(k),
};
const appRequest = { headers: { host: 'localhost' }, url: '/', connection: {} };
const client = smart(appRequest, {}, storage).client({
  serverUrl: t.base,
  tokenResponse: { access_token: t.token, token_type: 'bearer' },
});

await t.run('fhirclient', async (step) => {
  step('create');
  const created = await client.create(t.patient('Smart'));
  t.checkCreated(created, 'Patient');
  const id = created.id;

  step('read');
  const read = await client.request(`Patient/${id}`);
  t.equal(read.name?.[0]?.family, 'Smart', 'family read back');

  step('update');
  const updated = await client.update({ ...read, active: false });
  t.equal(updated.meta?.versionId, '2', 'updated versionId');
  t.equal(updated.active, false, 'updated active');

  step('history');
  t.checkHistory(await client.request(`Patient/${id}/_history`));

  step('search with paging');
  const obsIds = [];
  for (let i = 0; i < t.OBSERVATIONS; i++) {
    const o = await client.create(t.observation(`Patient/${id}`, i));
    t.checkCreated(o, 'Observation');
    obsIds.push(o.id);
  }
  // pageLimit 0 follows every next link and answers the list of pages
  const pages = await client.request(`Observation?subject=Patient/${id}&_count=${t.PAGE}`, { pageLimit: 0 });
  pages.forEach((b) => t.equal(b.type, 'searchset', 'search Bundle type'));
  const found = pages.flatMap((b) => (b.entry ?? []).map((e) => e.resource.id));
  t.checkPaging(found, pages.length, obsIds);

  step('transaction');
  const txResponse = await client.request({
    url: '',
    method: 'POST',
    body: JSON.stringify(t.transaction('SmartTx')),
    headers: { 'content-type': 'application/fhir+json' },
  });
  const tx = t.checkTransaction(txResponse);
  const txObs = await client.request(`Observation/${tx.observation}`);
  t.equal(txObs.subject?.reference, `Patient/${tx.patient}`, 'urn:uuid reference rewritten');

  step('$everything');
  t.checkEverything(await client.request(`Patient/${id}/$everything`), id, obsIds);

  step('error: read of an unknown id');
  try {
    await client.request(`Patient/${t.UNKNOWN}`);
  } catch (e) {
    t.equal(e.name, 'HttpError', 'error type');
    // fhirclient has read the body into the message, after a blank line
    const sep = e.message.indexOf('\n\n');
    t.check(sep > 0, `no body in the error message: ${e.message}`);
    t.checkNotFound(e.status, JSON.parse(e.message.slice(sep + 2)));
    return;
  }
  throw new Error(`reading Patient/${t.UNKNOWN} succeeded`);
});
