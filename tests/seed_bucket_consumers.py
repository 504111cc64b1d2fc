"""Seed the hazards and consumers around buckets for tests/integration/consumers.rs, on top of
the demo estate seeded with the same prefix (scripts/seed_estate.py).

- ml-fraud-models: replicated to <p>dr-fraud by a rule that does not opt in to SSE-KMS objects
  (replication-gap); an SQS queue subscribed to s3:ObjectCreated:*, and EventBridge on.
- ml-fraud-sandbox: a bucket policy that denies PutObject unless it is SSE-S3 (AES256)
  (encryption-policy).
- ml-vision-data: a bucket policy that lets a role of another account (210987654321) read,
  which the vision key policy does not name; and a same-account role <p>reader-ok that the key
  policy names.
- ml-vision-locked: a bucket policy that lets a CloudFront origin access identity read
  (oai-origin).
With `fix` as the third argument, apply each fix instead (the replication rule opts in with a
replica key, the policy allows SSE-KMS, the cross-account statement goes, the OAI statement
becomes an OAC one). Prints {"queue": ARN, "reader_ok": ARN, "cross": ARN, "replica_key": ARN}.
"""

import json
import sys

import boto3
from botocore.config import Config


def main(endpoint, p, mode=""):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
    iam, kms, sqs = boto3.client("iam", **kw), boto3.client("kms", **kw), boto3.client("sqs", **kw)
    account = "123456789012"
    fix = mode == "fix"
    # Replication: the source is versioned (seed_estate); the destination too.
    dr = f"{p}dr-fraud"
    replica_key = kms.create_key(Description="dr replica")["KeyMetadata"]["Arn"]
    if not fix:
        s3.create_bucket(Bucket=dr)
        s3.put_bucket_versioning(Bucket=dr, VersioningConfiguration={"Status": "Enabled"})
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sts:AssumeRole"}]})
        iam.create_role(RoleName=f"{p}replication", AssumeRolePolicyDocument=trust)
        iam.create_role(RoleName=f"{p}reader-ok", AssumeRolePolicyDocument=trust)
    role = f"arn:aws:iam::{account}:role/{p}replication"
    rule = {"ID": "to-dr", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{dr}"}}
    if fix:
        rule["SourceSelectionCriteria"] = {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
        rule["Destination"]["EncryptionConfiguration"] = {"ReplicaKmsKeyID": replica_key}
    s3.put_bucket_replication(Bucket=f"{p}ml-fraud-models",
                              ReplicationConfiguration={"Role": role, "Rules": [rule]})
    fraud = kms.describe_key(KeyId=f"alias/{p}ml-fraud")["KeyMetadata"]["Arn"]
    # The replication role may use the fraud key (root delegation + its IAM policy).
    iam.put_role_policy(RoleName=f"{p}replication", PolicyName="keys", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt"],
                       "Resource": [fraud, replica_key]}]}))
    queue = sqs.get_queue_attributes(
        QueueUrl=sqs.create_queue(QueueName=f"{p}fraud-events")["QueueUrl"],
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=f"{p}ml-fraud-models",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue, "Events": ["s3:ObjectCreated:*"]}],
            "EventBridgeConfiguration": {}})
    # Encryption-type policy.
    sandbox = f"{p}ml-fraud-sandbox"
    pin = {"Sid": "OnlySseS3", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
           "Resource": f"arn:aws:s3:::{sandbox}/*",
           "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}}
    if fix:
        pin["Condition"] = {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}
    s3.put_bucket_policy(Bucket=sandbox, Policy=json.dumps({"Version": "2012-10-17",
                                                            "Statement": [pin]}))
    # Readers of the vision data.
    vision = kms.describe_key(KeyId=f"alias/{p}ml-vision")["KeyMetadata"]["Arn"]
    reader_ok = f"arn:aws:iam::{account}:role/{p}reader-ok"
    cross = "arn:aws:iam::210987654321:role/analytics"
    kms.put_key_policy(KeyId=vision, PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "VisionReaders", "Effect": "Allow", "Principal": {"AWS": reader_ok},
             "Action": ["kms:Decrypt"], "Resource": "*"}]}))
    data = f"{p}ml-vision-data"
    readers = [{"Sid": "ReaderOk", "Effect": "Allow", "Principal": {"AWS": reader_ok},
                "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{data}/*"}]
    if not fix:
        readers.append({"Sid": "Analytics", "Effect": "Allow", "Principal": {"AWS": cross},
                        "Action": ["s3:GetObject", "s3:ListBucket"],
                        "Resource": [f"arn:aws:s3:::{data}", f"arn:aws:s3:::{data}/*"]})
    s3.put_bucket_policy(Bucket=data, Policy=json.dumps({"Version": "2012-10-17",
                                                         "Statement": readers}))
    # A CloudFront origin.
    locked = f"{p}ml-vision-locked"
    if fix:
        origin = {"Sid": "CloudFrontOAC", "Effect": "Allow",
                  "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                  "Resource": f"arn:aws:s3:::{locked}/*",
                  "Condition": {"StringEquals": {
                      "AWS:SourceArn": f"arn:aws:cloudfront::{account}:distribution/EDFDVBD6EXAMPLE"}}}
        kms.put_key_policy(KeyId=vision, PolicyName="default", Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Root", "Effect": "Allow",
                 "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*",
                 "Resource": "*"},
                {"Sid": "VisionReaders", "Effect": "Allow", "Principal": {"AWS": reader_ok},
                 "Action": ["kms:Decrypt"], "Resource": "*"},
                {"Sid": "AllowCloudFrontOAC", "Effect": "Allow",
                 "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "kms:Decrypt",
                 "Resource": "*", "Condition": {"StringEquals": {
                     "aws:SourceArn": f"arn:aws:cloudfront::{account}:distribution/EDFDVBD6EXAMPLE"}}}]}))
    else:
        origin = {"Sid": "CloudFrontOAI", "Effect": "Allow",
                  "Principal": {"AWS": "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2QWRUHEXAMPLE"},
                  "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{locked}/*"}
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({"Version": "2012-10-17",
                                                           "Statement": [origin]}))
    print(json.dumps({"queue": queue, "reader_ok": reader_ok, "cross": cross,
                      "replica_key": replica_key}))


if __name__ == "__main__":
    main(*sys.argv[1:])
