#!/usr/bin/env bash
# The main job on a local sandbox, from a fresh clone: install the emulator, build rekey,
# seed a small brownfield estate with every encryption class, inventory it, plan it, and
# show the plan's summary (with --apply: then apply, verify, roll back, verify). Nothing leaves
# this machine; the emulators stop at the end.
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

echo "== starting the Cloud Storage test server" >&2
rm -f "$state/gcs.port"
nohup .venv/bin/python scripts/gcs_test_server.py --port 0 --port-file "$state/gcs.port" >"$state/gcs.log" 2>&1 &
echo $! > "$state/gcs.pid"
trap 'kill "$(cat "$state/moto.pid")" "$(cat "$state/gcs.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do [ -s "$state/gcs.port" ] && break; sleep 0.1; done
gcs="http://127.0.0.1:$(cat "$state/gcs.port")"

echo "== seeding a brownfield estate (S3, KMS, Cloud Storage)" >&2
.venv/bin/python scripts/seed_estate.py --endpoint "$endpoint" > "$state/seed.json"
.venv/bin/python scripts/seed_gcs.py "$gcs"
sed "s#GCS_ENDPOINT#$gcs#" plans/demo.campaign.yaml > "$state/demo.campaign.yaml"

export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

echo "== rekey inventory" >&2
"$bin" inventory -c "$state/demo.campaign.yaml" -o "$state/inventory.jsonl"
echo
echo "== rekey plan (dry run)" >&2
"$bin" plan -c "$state/demo.campaign.yaml" -o "$state/plans/demo.plan.yaml"
"$bin" runbook "$state/plans/demo.plan.yaml" -o "$state/runbooks/demo.md"
echo
if [ "${1:-}" = "--apply" ]; then
  plan="$state/plans/demo.plan.yaml"
  echo "== rekey apply" >&2
  "$bin" apply "$plan" --yes
  echo "== rekey verify" >&2
  "$bin" verify "$plan" || true
  echo "== rekey rollback" >&2
  "$bin" rollback "$plan" --yes || true
  "$bin" verify "$plan" | head -3 || true
fi
echo "Review it with: $bin show $state/plans/demo.plan.yaml (runbook: $state/runbooks/demo.md)"
