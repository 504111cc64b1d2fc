"""Seed SageMaker resources on the emulator for tests/integration/sagemaker.rs, on top of the
demo estate seeded with the same prefix (scripts/seed_estate.py).

- fraud-ep: no KmsKeyId (service-managed), data capture on; model artifact in ml-fraud-models.
- vision-ep: a foreign CMK (the legacy key); artifact in ml-vision-data; role vision-exec.
- blocked-ep: artifact in ml-vision-data, role intruder, which the vision key policy does not allow.
- nb: a notebook instance tagged team=vision; train: a training job tagged team=vision.
The vision key's policy allows only the vision-exec role and rekey's own identity (no
account-root statement). IAM: the roles exist; fraud-exec's inline policy allows it to use the
fraud key (which delegates to IAM through the account root); rekey's identity (moto's user
`moto`) has an inline policy allowing the KMS actions SageMaker needs on any key.

With a third argument `full`, also:
- full-ep: two weighted variants, data capture, async output, VPC config, network isolation,
  its own ExecutionRoleArn, tags, an explainer config: every field a clone must keep;
- nvme-ep: one ml.g4dn variant (local NVMe storage), nothing else to re-key;
- nvme-capture-ep: one ml.m5d variant with data capture (the capture key is still re-keyed);
- partial-ep: an ml.m5.large and an ml.m5d.xlarge variant (the key covers one of them).
"""

import json
import sys

import boto3


def main(endpoint, p, full=False):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    sm = boto3.client("sagemaker", **kw)
    kms = boto3.client("kms", **kw)
    account = "123456789012"
    role = lambda n: f"arn:aws:iam::{account}:role/{p}{n}"
    iam = boto3.client("iam", **kw)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    for n in ["fraud-exec", "vision-exec", "intruder"]:
        iam.create_role(RoleName=f"{p}{n}", AssumeRolePolicyDocument=trust)
    fraud = kms.describe_key(KeyId=f"alias/{p}ml-fraud")["KeyMetadata"]["Arn"]
    iam.put_role_policy(RoleName=f"{p}fraud-exec", PolicyName="fraud-key", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                       "Resource": fraud}]}))
    try:
        iam.create_user(UserName="moto")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    iam.put_user_policy(UserName="moto", PolicyName="rekey-kms", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow",
                       "Action": ["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt",
                                  "kms:GenerateDataKey", "kms:ReEncrypt*"],
                       "Resource": "*"}]}))
    vision = kms.describe_key(KeyId=f"alias/{p}ml-vision")["KeyMetadata"]["Arn"]
    legacy = kms.describe_key(KeyId=f"alias/{p}legacy")["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=vision, PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "VisionServing", "Effect": "Allow",
                       "Principal": {"AWS": role("vision-exec")},
                       "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                       "Resource": "*"},
                      {"Sid": "RekeyDeploysEndpoints", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{account}:user/moto"},
                       "Action": ["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt",
                                  "kms:GenerateDataKey"],
                       "Resource": "*"}],
    }))
    image = f"{account}.dkr.ecr.us-east-1.amazonaws.com/xgboost:1"

    def endpoint_with(name, role_name, artifact, key=None, capture=False):
        sm.create_model(ModelName=f"{p}{name}-model", ExecutionRoleArn=role(role_name),
                        PrimaryContainer={"Image": image, "ModelDataUrl": artifact})
        cfg = dict(EndpointConfigName=f"{p}{name}-cfg",
                   ProductionVariants=[{"VariantName": "main", "ModelName": f"{p}{name}-model",
                                        "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
        if key:
            cfg["KmsKeyId"] = key
        if capture:
            cfg["DataCaptureConfig"] = {"EnableCapture": True, "InitialSamplingPercentage": 10,
                                        "DestinationS3Uri": f"s3://{p}ml-fraud-models/capture",
                                        "CaptureOptions": [{"CaptureMode": "Input"}]}
        sm.create_endpoint_config(**cfg)
        sm.create_endpoint(EndpointName=f"{p}{name}", EndpointConfigName=f"{p}{name}-cfg")

    endpoint_with("fraud-ep", "fraud-exec", f"s3://{p}ml-fraud-models/xgb/v0/model.tar.gz", capture=True)
    endpoint_with("vision-ep", "vision-exec", f"s3://{p}ml-vision-data/shards/00000.tfrecord", key=legacy)
    endpoint_with("blocked-ep", "intruder", f"s3://{p}ml-vision-data/shards/00001.tfrecord")
    sm.create_notebook_instance(NotebookInstanceName=f"{p}nb", InstanceType="ml.t3.medium",
                                RoleArn=role("vision-exec"), Tags=[{"Key": "team", "Value": "vision"}])
    sm.create_training_job(
        TrainingJobName=f"{p}train",
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        RoleArn=role("vision-exec"),
        OutputDataConfig={"S3OutputPath": f"s3://{p}ml-vision-data/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        Tags=[{"Key": "team", "Value": "vision"}],
    )
    if full:
        seed_full(sm, p, role, image)
    print(json.dumps({"vision": vision, "legacy": legacy, "fraud": fraud}))


def seed_full(sm, p, role, image):
    bucket = f"s3://{p}ml-fraud-models"
    for m in ["full-a", "full-b", "nvme", "nvme-capture"]:
        sm.create_model(ModelName=f"{p}{m}-model", ExecutionRoleArn=role("fraud-exec"),
                        PrimaryContainer={"Image": image,
                                          "ModelDataUrl": f"{bucket}/xgb/v0/model.tar.gz"})
    capture = {"EnableCapture": True, "InitialSamplingPercentage": 20,
               "DestinationS3Uri": f"{bucket}/capture",
               "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
               "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]}}
    sm.create_endpoint_config(
        EndpointConfigName=f"{p}full-ep-cfg",
        ProductionVariants=[
            {"VariantName": "blue", "ModelName": f"{p}full-a-model", "InitialInstanceCount": 2,
             "InstanceType": "ml.m5.large", "InitialVariantWeight": 0.7},
            {"VariantName": "green", "ModelName": f"{p}full-b-model", "InitialInstanceCount": 1,
             "InstanceType": "ml.c5.xlarge", "InitialVariantWeight": 0.3,
             "ContainerStartupHealthCheckTimeoutInSeconds": 600},
        ],
        DataCaptureConfig=capture,
        AsyncInferenceConfig={"ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
                              "OutputConfig": {"S3OutputPath": f"{bucket}/async-out",
                                               "S3FailurePath": f"{bucket}/async-fail"}},
        VpcConfig={"SecurityGroupIds": ["sg-0123456789abcdef0"],
                   "Subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]},
        EnableNetworkIsolation=True,
        ExecutionRoleArn=role("fraud-exec"),
        ExplainerConfig={"ClarifyExplainerConfig": {
            "ShapConfig": {"ShapBaselineConfig": {"MimeType": "text/csv"}}}},
        Tags=[{"Key": "team", "Value": "fraud"}, {"Key": "cost-center", "Value": "cc-42"}],
    )
    sm.create_endpoint(EndpointName=f"{p}full-ep", EndpointConfigName=f"{p}full-ep-cfg")
    sm.create_endpoint_config(
        EndpointConfigName=f"{p}nvme-ep-cfg",
        ProductionVariants=[{"VariantName": "main", "ModelName": f"{p}nvme-model",
                             "InitialInstanceCount": 1, "InstanceType": "ml.g4dn.xlarge"}])
    sm.create_endpoint(EndpointName=f"{p}nvme-ep", EndpointConfigName=f"{p}nvme-ep-cfg")
    sm.create_endpoint_config(
        EndpointConfigName=f"{p}nvme-capture-ep-cfg",
        ProductionVariants=[{"VariantName": "main", "ModelName": f"{p}nvme-capture-model",
                             "InitialInstanceCount": 1, "InstanceType": "ml.m5d.xlarge"}],
        DataCaptureConfig=capture)
    sm.create_endpoint(EndpointName=f"{p}nvme-capture-ep",
                       EndpointConfigName=f"{p}nvme-capture-ep-cfg")
    sm.create_endpoint_config(
        EndpointConfigName=f"{p}partial-ep-cfg",
        ProductionVariants=[
            {"VariantName": "ebs", "ModelName": f"{p}nvme-model", "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large"},
            {"VariantName": "nvme", "ModelName": f"{p}nvme-model", "InitialInstanceCount": 1,
             "InstanceType": "ml.m5d.xlarge"}])
    sm.create_endpoint(EndpointName=f"{p}partial-ep", EndpointConfigName=f"{p}partial-ep-cfg")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], full=len(sys.argv) > 3 and sys.argv[3] == "full")
