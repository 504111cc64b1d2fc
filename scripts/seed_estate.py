"""Seed a small brownfield ML estate on the AWS emulator, with every encryption class.

Usage: python seed_estate.py --endpoint http://127.0.0.1:PORT [--prefix P] [--objects N]

Buckets (names start with the prefix):
  ml-fraud-sandbox   default SSE-S3; one object per class (the canary stage)
  ml-fraud-models    versioned, default aws:kms with no key (the aws/s3 key); model artifacts
  ml-vision-data     tagged team=vision, no default rule; N small training shards (SSE-S3)
  ml-vision-locked   tagged team=vision, Object Lock on; one object under retention
  ml-scratch         matched by no rule (reported as unmatched)
Keys: alias/<prefix>ml-fraud and alias/<prefix>ml-vision (team keys), alias/<prefix>legacy (a
foreign CMK).
"""

import argparse
import base64
import datetime
import hashlib
import json

import boto3
from botocore.config import Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--objects", type=int, default=20, help="training shards in ml-vision-data")
    ap.add_argument("--region", default="us-east-1")
    a = ap.parse_args()
    kw = dict(
        endpoint_url=a.endpoint,
        region_name=a.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
    kms = boto3.client("kms", **kw)
    p = a.prefix

    def key(alias):
        k = kms.create_key(Description=alias)["KeyMetadata"]
        kms.create_alias(AliasName=f"alias/{p}{alias}", TargetKeyId=k["KeyId"])
        return k

    fraud, vision, legacy = key("ml-fraud"), key("ml-vision"), key("legacy")

    def bucket(name, **extra):
        s3.create_bucket(Bucket=p + name, **extra)
        return p + name

    expected = {}

    def put(b, k, body, cls, **extra):
        s3.put_object(Bucket=b, Key=k, Body=body, **extra)
        expected[f"s3://{b}/{k}"] = cls

    sandbox = bucket("ml-fraud-sandbox")
    s3.put_bucket_encryption(
        Bucket=sandbox,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    put(sandbox, "features/sse-s3.parquet", b"a" * 100, "sse-s3", ServerSideEncryption="AES256")
    put(sandbox, "features/aws-managed.parquet", b"b" * 200, "aws-managed-kms", ServerSideEncryption="aws:kms")
    put(sandbox, "features/foreign.parquet", b"c" * 300, "foreign-cmk",
        ServerSideEncryption="aws:kms", SSEKMSKeyId=legacy["KeyId"])
    put(sandbox, "features/on-target.parquet", b"d" * 400, "target-cmk",
        ServerSideEncryption="aws:kms", SSEKMSKeyId=f"alias/{p}ml-fraud")
    put(sandbox, "features/dsse.parquet", b"e" * 500, "dsse-kms",
        ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=legacy["Arn"])
    customer_key = b"k" * 32
    put(sandbox, "features/sse-c.parquet", b"f" * 600, "sse-c",
        SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key)
    put(sandbox, "archive/2019.tar", b"g" * 700, "sse-s3", ServerSideEncryption="AES256",
        StorageClass="GLACIER")

    models = bucket("ml-fraud-models")
    s3.put_bucket_versioning(Bucket=models, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=models,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    for i in range(3):
        put(models, f"xgb/v{i}/model.tar.gz", bytes([65 + i]) * 1024, "aws-managed-kms",
            ContentType="application/gzip", Metadata={"framework": "xgboost"})

    vdata = bucket("ml-vision-data")
    s3.put_bucket_tagging(Bucket=vdata, Tagging={"TagSet": [{"Key": "team", "Value": "vision"}]})
    for i in range(a.objects):
        put(vdata, f"shards/{i:05d}.tfrecord", (b"%05d" % i) * 200, "sse-s3", ServerSideEncryption="AES256")
    put(vdata, "legacy/unencrypted.csv", b"h" * 50, "unencrypted")

    locked = bucket("ml-vision-locked", ObjectLockEnabledForBucket=True)
    s3.put_bucket_tagging(Bucket=locked, Tagging={"TagSet": [{"Key": "team", "Value": "vision"}]})
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
    put(locked, "eval/holdout.csv", b"i" * 80, "sse-s3", ServerSideEncryption="AES256",
        ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)

    scratch = bucket("ml-scratch")
    put(scratch, "tmp/notes.txt", b"j" * 10, "sse-s3", ServerSideEncryption="AES256")

    print(json.dumps({
        "keys": {"fraud": fraud["Arn"], "vision": vision["Arn"], "legacy": legacy["Arn"]},
        "objects": expected,
    }, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
