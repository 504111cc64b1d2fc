#!/usr/bin/env bash
# Start the moto overlay on a free loopback port in the background and print its endpoint.
# Usage: scripts/start-moto.sh STATE_DIR   (writes STATE_DIR/moto.pid, moto.port, moto.log)
# Stop it with: kill "$(cat STATE_DIR/moto.pid)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${1:?usage: start-moto.sh STATE_DIR}"
mkdir -p "$state"
"$root/scripts/setup-emulator.sh"
venv="${REKEY_VENV:-$root/.venv}"
rm -f "$state/moto.port"
nohup "$venv/bin/python" "$root/scripts/moto_overlay.py" --port 0 --port-file "$state/moto.port" \
  >"$state/moto.log" 2>&1 &
echo $! > "$state/moto.pid"
for _ in $(seq 1 100); do
  if [ -s "$state/moto.port" ]; then
    port="$(cat "$state/moto.port")"
    if curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/moto-api/reset"; then
      echo "http://127.0.0.1:$port"
      exit 0
    fi
  fi
  sleep 0.2
done
echo "moto did not start; see $state/moto.log" >&2
exit 1
