# Team keys of campaign keys-example in AWS account vision-bu (222222222222), us-east-1: written by `rekey keys`.
# Review, then `terraform plan`; keys that exist are imported, never replaced.

resource "aws_kms_key" "fraud" {
  description              = "Team key fraud of campaign keys-example"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  rotation_period_in_days  = 180
  deletion_window_in_days  = 30
}

resource "aws_kms_alias" "fraud" {
  name          = "alias/ml-fraud"
  target_key_id = aws_kms_key.fraud.key_id
}

data "aws_iam_policy_document" "fraud" {
  policy_id = "rekey-fraud"

  statement {
    sid     = "RekeyKeyAdministrators"
    effect  = "Allow"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:Create*",
      "kms:Delete*",
      "kms:Describe*",
      "kms:Disable*",
      "kms:Enable*",
      "kms:Get*",
      "kms:List*",
      "kms:Put*",
      "kms:Revoke*",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:Update*"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::111111111111:role/KeyAdmins",
        "arn:aws:iam::222222222222:role/KeyAdmins"
      ]
    }
  }

  statement {
    sid     = "RekeyKeyUsers1"
    effect  = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:GenerateDataKey"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::111111111111:role/fraud-scoring-app",
        "arn:aws:iam::222222222222:role/rekey"
      ]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [
        "s3.us-east-1.amazonaws.com"
      ]
    }
  }

  statement {
    sid     = "RekeyKeyUsers2"
    effect  = "Allow"
    actions = [
      "kms:DescribeKey",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListGrants"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::222222222222:role/rekey"
      ]
    }
  }
}

resource "aws_kms_key_policy" "fraud" {
  key_id = aws_kms_key.fraud.id
  policy = data.aws_iam_policy_document.fraud.json
}

resource "aws_kms_key" "vision" {
  description              = "Team key vision of campaign keys-example"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  rotation_period_in_days  = 180
  deletion_window_in_days  = 30
}

resource "aws_kms_alias" "vision" {
  name          = "alias/ml-vision"
  target_key_id = aws_kms_key.vision.key_id
}

data "aws_iam_policy_document" "vision" {
  policy_id = "rekey-vision"

  statement {
    sid     = "RekeyKeyAdministrators"
    effect  = "Allow"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:Create*",
      "kms:Delete*",
      "kms:Describe*",
      "kms:Disable*",
      "kms:Enable*",
      "kms:Get*",
      "kms:List*",
      "kms:Put*",
      "kms:Revoke*",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:Update*"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::111111111111:role/KeyAdmins",
        "arn:aws:iam::222222222222:role/KeyAdmins"
      ]
    }
  }

  statement {
    sid     = "RekeyKeyUsers1"
    effect  = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GenerateDataKey"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::222222222222:role/rekey",
        "arn:aws:iam::222222222222:role/vision-batch"
      ]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [
        "sagemaker.us-east-1.amazonaws.com"
      ]
    }
  }

  statement {
    sid     = "RekeyKeyUsers1Grants"
    effect  = "Allow"
    actions = [
      "kms:CreateGrant"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::222222222222:role/rekey",
        "arn:aws:iam::222222222222:role/vision-batch"
      ]
    }

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = [
        "true"
      ]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [
        "sagemaker.us-east-1.amazonaws.com"
      ]
    }
  }

  statement {
    sid     = "RekeyKeyUsers2"
    effect  = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:GenerateDataKey"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::222222222222:role/rekey",
        "arn:aws:iam::222222222222:role/vision-exec"
      ]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [
        "s3.us-east-1.amazonaws.com"
      ]
    }
  }

  statement {
    sid     = "RekeyKeyUsers3"
    effect  = "Allow"
    actions = [
      "kms:DescribeKey",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListGrants"
    ]
    resources = [
      "*"
    ]

    principals {
      type        = "AWS"
      identifiers = [
        "arn:aws:iam::222222222222:role/rekey"
      ]
    }
  }
}

resource "aws_kms_key_policy" "vision" {
  key_id = aws_kms_key.vision.id
  policy = data.aws_iam_policy_document.vision.json
}
