# Object Lock operations for hasteward's tests, through boto3 (path-style, region us-east-1).
# usage: s3lock.py ENDPOINT ACCESS_KEY SECRET_KEY COMMAND BUCKET [ARG]; the secret comes from
# the environment variable S3LOCK_SECRET when SECRET_KEY is "-" (it is never in argv then).
#   create BUCKET                  a plain bucket (no versioning, no lock)
#   create-locked BUCKET DAYS      bucket with Object Lock, versioning, default GOVERNANCE DAYS
#   versions BUCKET PREFIX         prints "<versions> <delete markers>" under PREFIX
#   delete-version BUCKET PREFIX   tries to delete the first version under PREFIX for good
#                                  (prints "denied" or "deleted")
#   remove-markers BUCKET SINCE    removes the delete markers made at or after SINCE (Unix
#                                  seconds): the recovery after a rogue prune
import os, sys
import boto3, botocore

endpoint, key, secret, command, bucket = sys.argv[1:6]
arg = sys.argv[6] if len(sys.argv) > 6 else ""
if secret == "-":
    secret = os.environ["S3LOCK_SECRET"]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=botocore.config.Config(s3={"addressing_style": "path"}))

def listing(prefix=""):
    versions, markers = [], []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
    return versions, markers

if command == "create":
    s3.create_bucket(Bucket=bucket)
elif command == "create-locked":
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": int(arg)}}})
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    if status != "Enabled":
        sys.exit(f"versioning is {status!r} on an object-locked bucket")
elif command == "versions":
    versions, markers = listing(arg)
    print(len(versions), len(markers))
elif command == "marker-keys":
    _, markers = listing()
    print(" ".join(m["Key"] for m in markers))
elif command == "delete-version":
    versions, _ = listing(arg)
    v = versions[0]
    try:
        s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"],
                         BypassGovernanceRetention=True)
        print("deleted")
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "AccessDenied":
            raise
        print("denied")
elif command == "remove-markers":
    _, markers = listing()
    since = int(arg or 0)
    # restic's lock files stay deleted: bringing one back would lock the repository.
    markers = [m for m in markers if m["LastModified"].timestamp() >= since
               and "/locks/" not in "/" + m["Key"]]
    for m in markers:
        s3.delete_object(Bucket=bucket, Key=m["Key"], VersionId=m["VersionId"])
    print(len(markers))
else:
    sys.exit(f"unknown command {command}")
