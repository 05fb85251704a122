#!/usr/bin/env bash
# build-hydra.sh builds Ory Hydra v2.3.0 from the Go module proxy and caches
# the binary, so that the auth end-to-end test can run against a real
# OpenID provider. It is idempotent: a cached binary that runs is reused.
#
#   auth/hydratest/build-hydra.sh            # prints the binary's path
#   export FHIRGATE_HYDRA=$(auth/hydratest/build-hydra.sh)
#   go test ./auth/hydratest/
#
# The cache directory is FHIRGATE_CACHE (default $HOME/.cache/fhirgate);
# CI should cache that directory between runs. `go install` cannot build
# Hydra (its go.mod has replace directives), hence the throwaway module.
set -euo pipefail

version=v2.3.0
cache=${FHIRGATE_CACHE:-$HOME/.cache/fhirgate}
bin=$cache/hydra-$version

if [[ -x $bin ]] && "$bin" version >/dev/null 2>&1; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
{
	go mod init fhirgate.local/hydrabuild
	# Hydra v2.3.0 needs Ory's fork of pop; its own go.mod says so with a
	# replace directive, which does not apply to a dependent module.
	go mod edit -replace github.com/gobuffalo/pop/v6=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b
	go get -tool github.com/ory/hydra/v2@$version
	go build -trimpath -tags sqlite,sqlite_omit_load_extension -o hydra github.com/ory/hydra/v2
} >&2
# Move into place atomically so that a concurrent run never sees half a file.
mv hydra "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "$bin"
