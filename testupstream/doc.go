// Package testupstream holds a real FHIR server that nobody on fhirgate
// wrote, used as an upstream in tests: medplum-upstream.mjs serves Medplum's
// @medplum/fhir-router on a MemoryRepository over HTTP on loopback, loaded
// with Synthea bundles. The test in this directory starts it and pulls a
// patient with the fhir adapter.
//
// Setup (CI runs it; Node 20.19+):
//
//	cd testupstream && npm ci --omit=optional
//
// The test is skipped when node or node_modules are missing, unless
// FHIRGATE_MEDPLUM_UPSTREAM=1, which makes it required.
package testupstream
