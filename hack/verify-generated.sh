#!/usr/bin/env bash
# Fails when the committed generated code (OpenAPI definitions, BPF objects
# and their Go bindings) differs from what `make generate` makes.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
files=(controlplane/openapi/generated/zz_generated.openapi.go dataplane/bpfobj/socklb_bpfel.go dataplane/bpfobj/socklb_bpfel.o
  dataplane/bpfobj/tcpod_bpfel.go dataplane/bpfobj/tcpod_bpfel.o dataplane/bpfobj/tcnodeport_bpfel.go dataplane/bpfobj/tcnodeport_bpfel.o)
for f in "${files[@]}"; do mkdir -p "$tmp/$(dirname "$f")"; cp "$f" "$tmp/$f"; done
make -s generate >/dev/null
stale=0
for f in "${files[@]}"; do
  if ! cmp -s "$tmp/$f" "$f"; then echo "generated file is stale: $f" >&2; stale=1; fi
done
if ((stale)); then echo "run 'make generate' and commit the result" >&2; exit 1; fi
