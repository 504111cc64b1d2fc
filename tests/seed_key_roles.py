"""Seed the key-access scenarios of tests/integration/sagemaker.rs on top of the demo estate
seeded with the same prefix: the fraud key gets a policy with one statement per case, and
IAM roles exist for each (prints the role ARNs by case as JSON).

- named:   the key policy names the role (statement NamedRole): allowed on its own;
- iam:     only the account root is named (RootDelegation); its IAM policy allows: allowed;
- noiam:   root delegation, no IAM policy: not allowed;
- deny:    its IAM policy allows kms:*, but a Deny with NotAction kms:Encrypt names it: denied;
- via:     named under kms:ViaService = s3.us-east-1.amazonaws.com (decided): allowed via S3;
- cond:    named only under aws:SourceIp (not decided by rekey): unverified.
"""

import json
import sys

import boto3


def main(endpoint, p):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    kms, iam = boto3.client("kms", **kw), boto3.client("iam", **kw)
    account = "123456789012"
    key = kms.describe_key(KeyId=f"alias/{p}ml-fraud")["KeyMetadata"]["Arn"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    roles = {}
    for case in ["named", "iam", "noiam", "deny", "via", "cond"]:
        roles[case] = iam.create_role(RoleName=f"{p}{case}-r",
                                      AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    use = ["kms:Decrypt", "kms:GenerateDataKey"]
    iam.put_role_policy(RoleName=f"{p}iam-r", PolicyName="use-fraud", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": use, "Resource": key}]}))
    iam.put_role_policy(RoleName=f"{p}deny-r", PolicyName="all-kms", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}))
    statements = [
        {"Sid": "RootDelegation", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "NamedRole", "Effect": "Allow", "Principal": {"AWS": roles["named"]},
         "Action": use, "Resource": "*"},
        {"Sid": "ViaS3", "Effect": "Allow", "Principal": {"AWS": roles["via"]}, "Action": use,
         "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}},
        {"Sid": "SourceIpOnly", "Effect": "Allow", "Principal": {"AWS": roles["cond"]},
         "Action": use, "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Sid": "DenyAllButEncrypt", "Effect": "Deny", "Principal": {"AWS": roles["deny"]},
         "NotAction": "kms:Encrypt", "Resource": "*"},
    ]
    kms.put_key_policy(KeyId=key, PolicyName="default",
                       Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    print(json.dumps({"key": key, "roles": roles}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
