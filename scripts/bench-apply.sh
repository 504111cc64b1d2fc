#!/usr/bin/env bash
# Benchmark (not a test): re-encrypt N × 1 KiB objects (default 2,000) in place on the emulator
# with `rekey apply`, and the same estate with `aws s3 cp --recursive --sse aws:kms` (awscli
# from pip, in its own virtualenv) at the same concurrency. Prints objects/s and the client's
# CPU milliseconds per object (user+sys of the client process, rekey's journal included), and
# the ratios. Usage: scripts/bench-apply.sh [N] [CONCURRENCY]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-2000}"
conc="${2:-16}"
state="$(mktemp -d)"
bench_venv="${REKEY_BENCH_VENV:-$root/.venv-bench}"
if [ ! -x "$bench_venv/bin/aws" ]; then
  python3 -m venv "$bench_venv"
  "$bench_venv/bin/pip" install --quiet --disable-pip-version-check "awscli==1.44.8"
fi
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/rekey"
endpoint="$(scripts/start-moto.sh "$state")"
trap 'kill "$(cat "$state/moto.pid")" 2>/dev/null || true; rm -rf "$state"' EXIT
key_arn="$(.venv/bin/python - "$endpoint" "$n" <<'PY'
import sys, boto3
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
endpoint, n = sys.argv[1], int(sys.argv[2])
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}, max_pool_connections=16), **kw)
kms = boto3.client("kms", **kw)
k = kms.create_key()["KeyMetadata"]
kms.create_alias(AliasName="alias/ml-bench", TargetKeyId=k["KeyId"])
body = b"x" * 1024
for bucket in ["ml-bench-rekey", "ml-bench-awscli"]:
    s3.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: s3.put_object(Bucket=bucket, Key=f"shards/{i:06d}.bin", Body=body,
                                            ServerSideEncryption="AES256"), range(n)))
print(k["Arn"])
PY
)"
cat > "$state/bench.yaml" <<YAML
version: 1
campaign: bench
aws: { region: us-east-1, s3: { buckets: ["ml-bench-rekey"] } }
keys: { bench: { aws: alias/ml-bench } }
mapping: [ { match: { bucket: "ml-*" }, key: bench } ]
limits: { concurrency: $conc, requests_per_second: 100000 }
YAML
cat > "$state/aws-config" <<CFG
[default]
region = us-east-1
s3 =
  max_concurrent_requests = $conc
  addressing_style = path
CFG
export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
"$bin" plan -c "$state/bench.yaml" -o "$state/bench.plan.yaml" >/dev/null 2>&1
.venv/bin/python - "$bin" "$state" "$n" "$conc" "$bench_venv/bin/aws" "$key_arn" "$endpoint" <<'PY'
import os, resource, subprocess, sys, time
binary, state, n, conc, aws, key_arn, endpoint = sys.argv[1:8]
n = int(n)

def measure(cmd, env=None):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu

rk_wall, rk_cpu = measure([binary, "apply", f"{state}/bench.plan.yaml", "--yes"])
env = dict(os.environ, AWS_CONFIG_FILE=f"{state}/aws-config")
aw_wall, aw_cpu = measure([aws, "s3", "cp", "s3://ml-bench-awscli/", "s3://ml-bench-awscli/", "--recursive",
                           "--sse", "aws:kms", "--sse-kms-key-id", key_arn, "--endpoint-url", endpoint,
                           "--only-show-errors"], env)
print(f"in-place re-encryption of {n} x 1 KiB objects at concurrency {conc}:")
print(f"  rekey apply   {rk_wall:6.2f} s  {n / rk_wall:6.0f} objects/s  CPU {rk_cpu:7.0f} ms  {rk_cpu / n:.3f} ms/object")
print(f"  aws s3 cp     {aw_wall:6.2f} s  {n / aw_wall:6.0f} objects/s  CPU {aw_cpu:7.0f} ms  {aw_cpu / n:.3f} ms/object")
print(f"  CPU per object, rekey / awscli: {rk_cpu / aw_cpu:.3f}   wall time, rekey / awscli: {rk_wall / aw_wall:.3f}")
PY
# Both estates ended on the key: check one object of each.
.venv/bin/python - "$endpoint" "$key_arn" <<'PY'
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))
for b in ["ml-bench-rekey", "ml-bench-awscli"]:
    h = s3.head_object(Bucket=b, Key="shards/000000.bin")
    assert h.get("SSEKMSKeyId") == sys.argv[2], (b, h.get("SSEKMSKeyId"))
print("  both estates ended on the key")
PY
