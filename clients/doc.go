// Package clients runs real FHIR clients that nobody on fhirgate wrote
// against a live, secured gateway on loopback: fhir-kit-client, Medplum's
// MedplumClient (@medplum/core) and SMART's fhirclient through its Node
// adapter, all from npm with a committed lockfile. Each script (fhirkit.mjs,
// medplum.mjs, smart.mjs) creates, reads, updates, searches with paging,
// reads history, posts a transaction, calls Patient/$everything and checks
// that reading an unknown id fails with a 404 OperationOutcome; it reads
// FHIR_BASE and FHIR_TOKEN and exits non-zero on any mismatch.
//
// Setup (CI runs it; Node 20.19+):
//
//	cd clients && npm ci --omit=optional
//
// The test is skipped when node or node_modules are missing, unless
// FHIRGATE_NPM_CLIENTS=1, which makes it required.
package clients
