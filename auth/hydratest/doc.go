// Package hydratest holds the end-to-end test of package auth against a
// real OpenID provider, Ory Hydra v2.3.0. It runs when FHIRGATE_HYDRA names
// a Hydra binary, which build-hydra.sh (next to this file) builds and
// caches:
//
//	export FHIRGATE_HYDRA=$(auth/hydratest/build-hydra.sh)
//	go test ./auth/hydratest/
package hydratest
