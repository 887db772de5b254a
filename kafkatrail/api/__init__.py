"""`kafkatrail api`: the CloudTrail control-plane API (AWS JSON 1.1 over HTTP, SigV4-authenticated).

- `kafkatrail.api.errors`: `ApiError`, an AWS-shaped error (`{"__type": code, "Message": message}`).
- `kafkatrail.api.auth`: the credentials file and SigV4 verification with botocore's own signer.
- `kafkatrail.api.operations`: the operations, over a trail store, a resource checker and a status view.
- `kafkatrail.api.resources`: the checks CloudTrail makes against S3, SNS, KMS and CloudWatch Logs.
- `kafkatrail.api.server`: the aiohttp server and `ApiService`, which follows the trails and trail-status topics
  and writes trails to the trails topic.
"""
