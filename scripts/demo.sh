#!/usr/bin/env bash
# The main job on a local sandbox, from a fresh clone: install the emulator, build rekey,
# seed a small brownfield estate with every encryption class, inventory it, plan it, and
# show the plan's summary. Nothing leaves this machine; the emulator stops at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.rekey-sandbox"
if [ -f "$state/moto.pid" ]; then kill "$(cat "$state/moto.pid")" 2>/dev/null || true; fi
rm -rf "$state" && mkdir -p "$state/plans"

echo "== building rekey" >&2
cargo build --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/debug/rekey"

echo "== starting the AWS emulator (moto overlay)" >&2
endpoint="$(scripts/start-moto.sh "$state")"
trap 'kill "$(cat "$state/moto.pid")" 2>/dev/null || true' EXIT
echo "   $endpoint" >&2

echo "== seeding a brownfield estate" >&2
.venv/bin/python scripts/seed_estate.py --endpoint "$endpoint" > "$state/seed.json"

export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

echo "== rekey inventory" >&2
"$bin" inventory -c plans/demo.campaign.yaml -o "$state/inventory.jsonl"
echo
echo "== rekey plan (dry run)" >&2
"$bin" plan -c plans/demo.campaign.yaml -o "$state/plans/demo.plan.yaml"
echo
echo "Review it with: $bin show $state/plans/demo.plan.yaml"
