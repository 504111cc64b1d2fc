"""Seed SageMaker resources on the emulator for tests/integration/sagemaker.rs, on top of the
demo estate seeded with the same prefix (scripts/seed_estate.py).

- fraud-ep: no KmsKeyId (service-managed), data capture on; model artifact in ml-fraud-models.
- vision-ep: a foreign CMK (the legacy key); artifact in ml-vision-data; role vision-exec.
- blocked-ep: artifact in ml-vision-data, role intruder, which the vision key policy does not allow.
- nb: a notebook instance tagged team=vision; train: a training job tagged team=vision.
The vision key's policy allows only the vision-exec role (no account-root statement).
"""

import json
import sys

import boto3


def main(endpoint, p):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    sm = boto3.client("sagemaker", **kw)
    kms = boto3.client("kms", **kw)
    account = "123456789012"
    role = lambda n: f"arn:aws:iam::{account}:role/{p}{n}"
    vision = kms.describe_key(KeyId=f"alias/{p}ml-vision")["KeyMetadata"]["Arn"]
    legacy = kms.describe_key(KeyId=f"alias/{p}legacy")["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=vision, PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "VisionServing", "Effect": "Allow",
                       "Principal": {"AWS": role("vision-exec")},
                       "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
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
    print(json.dumps({"vision": vision, "legacy": legacy}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
