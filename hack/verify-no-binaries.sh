#!/usr/bin/env bash
# Fails when the repository tracks a build output: a file over 2 MiB or an
# executable ELF binary (a 171 MB petrel binary once sat at the root).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  if ((size > 2 * 1024 * 1024)); then
    echo "tracked file over 2 MiB: $f ($size bytes)" >&2; bad=1
  elif [ -x "$f" ] && [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = "177ELF" ]; then
    echo "tracked executable binary: $f" >&2; bad=1
  fi
done < <(git ls-files -z)
if ((bad)); then echo "remove build outputs with 'git rm --cached' and list them in .gitignore" >&2; exit 1; fi
