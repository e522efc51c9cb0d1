# tieredcache: the shared L2 table and two least-privilege IAM policies.
# The same table and policies as ../cloudformation/tieredcache.json and
# ../iam/*.json; deploy/terraform_test.go checks all three against the code.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "table_name" {
  description = "The table tiered.Options.Table names."
  type        = string
  default     = "tieredcache"
}

variable "stream_view_type" {
  description = "KEYS_ONLY for the default cache; NEW_IMAGE (or NEW_AND_OLD_IMAGES) for tiered.Options.ReplaceOnChange. Changing it replaces the stream (a new ARN): running caches flush once."
  type        = string
  default     = "KEYS_ONLY"
  validation {
    condition     = contains(["KEYS_ONLY", "NEW_IMAGE", "NEW_AND_OLD_IMAGES"], var.stream_view_type)
    error_message = "stream_view_type must be KEYS_ONLY, NEW_IMAGE or NEW_AND_OLD_IMAGES."
  }
}

resource "aws_dynamodb_table" "cache" {
  name         = var.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "exp"
    enabled        = true
  }

  stream_enabled   = true
  stream_view_type = var.stream_view_type
}

# What every cache node calls: reads, writes, the table and TTL check New
# makes, and the stream. Attach it to the pods' role.
resource "aws_iam_policy" "runtime" {
  name        = "${var.table_name}-tieredcache-runtime"
  description = "tieredcache runtime: reads, writes, table and TTL check, stream"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "CacheItems"
        Effect   = "Allow"
        Action   = ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"]
        Resource = [aws_dynamodb_table.cache.arn]
      },
      {
        Sid      = "CacheTableCheck"
        Effect   = "Allow"
        Action   = ["dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive"]
        Resource = [aws_dynamodb_table.cache.arn]
      },
      {
        Sid      = "CacheStream"
        Effect   = "Allow"
        Action   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]
        Resource = ["${aws_dynamodb_table.cache.arn}/stream/*"]
      },
    ]
  })
}

# What tiered.Options.CreateTable (l2.Table.EnsureTable) adds. Not needed when
# this file creates the table.
resource "aws_iam_policy" "admin" {
  name        = "${var.table_name}-tieredcache-admin"
  description = "tieredcache table setup (CreateTable option)"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "CacheTableSetup"
        Effect   = "Allow"
        Action   = ["dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive"]
        Resource = [aws_dynamodb_table.cache.arn]
      },
    ]
  })
}

output "table_name" {
  value = aws_dynamodb_table.cache.name
}

output "table_arn" {
  value = aws_dynamodb_table.cache.arn
}

output "stream_arn" {
  value = aws_dynamodb_table.cache.stream_arn
}

output "runtime_policy_arn" {
  value = aws_iam_policy.runtime.arn
}

output "admin_policy_arn" {
  value = aws_iam_policy.admin.arn
}
