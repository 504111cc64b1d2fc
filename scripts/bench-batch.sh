#!/usr/bin/env bash
# Benchmark (not a test): re-key N × 1 KiB SSE-S3 objects (default 2,000) of a versioned bucket
# on the emulator overlay, once with the local engine (`update-encryption`: one
# UpdateObjectEncryption per object) and once with `batch-update-encryption` (one S3 Batch
# Operations job; the overlay runs its tasks). Prints, for each, the rekey process's wall time
# and CPU milliseconds per object (user+sys, journal included), and the ratio. The overlay's
# task pace makes the batch wall time the emulator's, not AWS's: the CPU is rekey's own.
# Usage: scripts/bench-batch.sh [N]   (REKEY_BIN=path uses that binary instead of a release build)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-2000}"
state="$(mktemp -d)"
if [ -n "${REKEY_BIN:-}" ]; then
  bin="$REKEY_BIN"
else
  cargo build --release --quiet
  bin="${CARGO_TARGET_DIR:-$root/target}/release/rekey"
fi
endpoint="$(scripts/start-moto.sh "$state")"
trap 'kill "$(cat "$state/moto.pid")" 2>/dev/null || true; rm -rf "$state"' EXIT
.venv/bin/python - "$endpoint" "$n" <<'PY'
import json, sys, boto3
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
endpoint, n = sys.argv[1], int(sys.argv[2])
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}, max_pool_connections=16), **kw)
kms = boto3.client("kms", **kw)
iam = boto3.client("iam", **kw)
k = kms.create_key()["KeyMetadata"]
kms.create_alias(AliasName="alias/ml-bench", TargetKeyId=k["KeyId"])
iam.create_role(RoleName="rekey-batch", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
iam.put_role_policy(RoleName="rekey-batch", PolicyName="jobs", PolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["kms:*", "s3:*"], "Resource": "*"}]}))
s3.create_bucket(Bucket="bench-ops")
body = b"x" * 1024
for bucket in ["ml-bench-local", "ml-bench-batch"]:
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: s3.put_object(Bucket=bucket, Key=f"shards/{i:06d}.bin", Body=body,
                                            ServerSideEncryption="AES256"), range(n)))
PY
for engine in local batch; do
  if [ "$engine" = local ]; then s3="engine: update-encryption"; else
    s3="engine: batch-update-encryption, batch: { manifest_bucket: bench-ops, report_bucket: bench-ops, role_arn: \"arn:aws:iam::123456789012:role/rekey-batch\" }"; fi
  cat > "$state/$engine.yaml" <<YAML
version: 1
campaign: bench-$engine
aws: { region: us-east-1, s3: { buckets: ["ml-bench-$engine"], $s3 } }
keys: { bench: { aws: alias/ml-bench } }
mapping: [ { match: { bucket: "ml-*" }, key: bench } ]
limits: { concurrency: 16, requests_per_second: 100000 }
YAML
done
export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
for engine in local batch; do
  "$bin" plan -c "$state/$engine.yaml" -o "$state/$engine.plan.yaml" >/dev/null 2>&1
done
.venv/bin/python - "$bin" "$state" "$n" <<'PY'
import resource, subprocess, sys, time
binary, state, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def measure(engine):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run([binary, "apply", f"{state}/{engine}.plan.yaml", "--yes"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000

lw, lc = measure("local")
bw, bc = measure("batch")
print(f"re-keying {n} x 1 KiB objects of a versioned bucket:")
print(f"  update-encryption (local)  {lw:6.2f} s  CPU {lc:7.0f} ms  {lc / n:.3f} ms/object")
print(f"  batch-update-encryption    {bw:6.2f} s  CPU {bc:7.0f} ms  {bc / n:.3f} ms/object (the emulator runs the tasks)")
print(f"  rekey CPU per object, batch / local: {bc / lc:.3f}")
PY
