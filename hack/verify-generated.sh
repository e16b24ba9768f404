#!/usr/bin/env bash
# Fails when the committed generated code differs from what `make generate` makes.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp controlplane/openapi/generated/zz_generated.openapi.go "$tmp/before.go"
make -s generate-openapi >/dev/null
if ! cmp -s "$tmp/before.go" controlplane/openapi/generated/zz_generated.openapi.go; then
  echo "generated OpenAPI code is stale: run 'make generate' and commit" >&2
  exit 1
fi
