#!/usr/bin/env bash
# Install the pinned AWS emulator (moto in server mode) into the project-local virtualenv
# .venv. Idempotent: does nothing when the installed pins already match.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${REKEY_VENV:-$root/.venv}"
req="$root/scripts/requirements-emulator.txt"
stamp="$venv/.rekey-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "emulator installed in $venv" >&2
