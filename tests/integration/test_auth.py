"""SigV4 at the edge: unsigned, mis-signed, unknown-key and stale requests; regions from the scope.

Every refusal must be a 4xx AWS JSON error (`__type` + `message`) and must not run the operation.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any
from unittest import mock

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from .galley_process import ACCESS_KEY, REGION, SECRET_KEY, GalleyProcess

TARGET = "AmazonEC2ContainerServiceV20141113"
SIGNATURE_MISMATCH_PREFIX = "The request signature we calculated does not match"


def build(endpoint: str, operation: str, params: dict[str, Any], *, access_key: str = ACCESS_KEY,
          secret_key: str = SECRET_KEY, region: str = REGION, sign: bool = True,
          at: datetime.datetime | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(params).encode()
    request = AWSRequest(method="POST", url=endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{TARGET}.{operation}"})
    if sign:
        signer = SigV4Auth(Credentials(access_key, secret_key), "ecs", region)
        if at is None:
            signer.add_auth(request)
        else:
            with mock.patch("botocore.auth.get_current_datetime", return_value=at):
                signer.add_auth(request)
    return body, dict(request.headers.items())


def post(endpoint: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    r = requests.post(endpoint + "/", data=body, headers=headers, timeout=30)
    try:
        doc = r.json()
    except ValueError:
        doc = None
    return r.status_code, doc, dict(r.headers)


def assert_aws_error(status: int, doc: Any, code: str) -> str:
    assert 400 <= status < 500, (status, doc)
    assert isinstance(doc, dict), doc
    assert doc.get("__type", "").rsplit("#", 1)[-1] == code, doc
    message = doc.get("message") or doc.get("Message")
    assert isinstance(message, str) and message, doc
    return message


@pytest.fixture
def probe_name(galley: GalleyProcess) -> Any:
    """A cluster name refused requests try to create; it must never come into existence."""
    name = f"auth-probe-{uuid.uuid4().hex[:8]}"
    yield name
    ecs = galley.client()
    found = ecs.describe_clusters(clusters=[name])["clusters"]
    assert found == [], f"a refused request created cluster {name}: {found}"


def test_unsigned_request_is_missing_authentication_token(galley: GalleyProcess,
                                                          probe_name: str) -> None:
    body, headers = build(galley.endpoint, "CreateCluster", {"clusterName": probe_name},
                          sign=False)
    status, doc, _ = post(galley.endpoint, body, headers)
    assert_aws_error(status, doc, "MissingAuthenticationTokenException")


def test_non_sigv4_authorization_is_missing_authentication_token(galley: GalleyProcess,
                                                                 probe_name: str) -> None:
    body, headers = build(galley.endpoint, "CreateCluster", {"clusterName": probe_name},
                          sign=False)
    headers["Authorization"] = "Bearer not-a-signature"
    status, doc, _ = post(galley.endpoint, body, headers)
    assert_aws_error(status, doc, "MissingAuthenticationTokenException")


def test_wrong_secret_is_invalid_signature(galley: GalleyProcess, probe_name: str) -> None:
    body, headers = build(galley.endpoint, "CreateCluster", {"clusterName": probe_name},
                          secret_key="not-the-secret")
    status, doc, _ = post(galley.endpoint, body, headers)
    message = assert_aws_error(status, doc, "InvalidSignatureException")
    assert message.startswith(SIGNATURE_MISMATCH_PREFIX), message


def test_body_changed_after_signing_is_invalid_signature(galley: GalleyProcess,
                                                         probe_name: str) -> None:
    _, headers = build(galley.endpoint, "CreateCluster", {"clusterName": "auth-original"})
    tampered = json.dumps({"clusterName": probe_name}).encode()
    status, doc, _ = post(galley.endpoint, tampered, headers)
    message = assert_aws_error(status, doc, "InvalidSignatureException")
    assert message.startswith(SIGNATURE_MISMATCH_PREFIX), message
    assert galley.client().describe_clusters(clusters=["auth-original"])["clusters"] == []


def test_target_changed_after_signing_is_invalid_signature(galley: GalleyProcess,
                                                           probe_name: str) -> None:
    body, headers = build(galley.endpoint, "ListClusters", {"clusterName": probe_name})
    headers["X-Amz-Target"] = f"{TARGET}.CreateCluster"  # X-Amz-Target is a signed header
    status, doc, _ = post(galley.endpoint, body, headers)
    assert_aws_error(status, doc, "InvalidSignatureException")


def test_unknown_access_key_is_unrecognized_client(galley: GalleyProcess,
                                                   probe_name: str) -> None:
    body, headers = build(galley.endpoint, "CreateCluster", {"clusterName": probe_name},
                          access_key="AKIDUNKNOWN000000000", secret_key="whatever")
    status, doc, _ = post(galley.endpoint, body, headers)
    message = assert_aws_error(status, doc, "UnrecognizedClientException")
    assert message == "The security token included in the request is invalid."


def test_stale_date_is_signature_expired(galley: GalleyProcess, probe_name: str) -> None:
    ten_minutes_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    body, headers = build(galley.endpoint, "CreateCluster", {"clusterName": probe_name},
                          at=ten_minutes_ago)
    assert headers["X-Amz-Date"] == ten_minutes_ago.strftime("%Y%m%dT%H%M%SZ")
    status, doc, _ = post(galley.endpoint, body, headers)
    message = assert_aws_error(status, doc, "InvalidSignatureException")
    assert message.startswith("Signature expired"), message


def test_future_date_is_signature_not_yet_current(galley: GalleyProcess,
                                                  probe_name: str) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    body, headers = build(galley.endpoint, "CreateCluster", {"clusterName": probe_name}, at=later)
    status, doc, _ = post(galley.endpoint, body, headers)
    message = assert_aws_error(status, doc, "InvalidSignatureException")
    assert message.startswith("Signature not yet current"), message


def test_date_within_the_window_is_accepted(galley: GalleyProcess) -> None:
    """The patched clock itself is fine: 2 minutes old is inside the 5-minute window."""
    two_minutes_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=2)
    body, headers = build(galley.endpoint, "ListClusters", {}, at=two_minutes_ago)
    status, doc, _ = post(galley.endpoint, body, headers)
    assert status == 200, doc
    assert "clusterArns" in doc


def test_missing_date_is_a_4xx(galley: GalleyProcess, probe_name: str) -> None:
    body, headers = build(galley.endpoint, "CreateCluster", {"clusterName": probe_name})
    del headers["X-Amz-Date"]
    status, doc, _ = post(galley.endpoint, body, headers)
    assert_aws_error(status, doc, "IncompleteSignatureException")


def test_boto3_reports_the_auth_errors(galley: GalleyProcess, probe_name: str) -> None:
    def client(key: str, secret: str) -> Any:
        return boto3.client("ecs", endpoint_url=galley.endpoint, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(retries={"max_attempts": 1}))

    with pytest.raises(ClientError) as bad_secret:
        client(ACCESS_KEY, "wrong").create_cluster(clusterName=probe_name)
    assert bad_secret.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert 400 <= bad_secret.value.response["ResponseMetadata"]["HTTPStatusCode"] < 500
    with pytest.raises(ClientError) as bad_key:
        client("AKIDUNKNOWN000000000", SECRET_KEY).create_cluster(clusterName=probe_name)
    assert bad_key.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_valid_boto3_client_works(galley: GalleyProcess) -> None:
    ecs = galley.client()
    name = f"auth-ok-{uuid.uuid4().hex[:8]}"
    created = ecs.create_cluster(clusterName=name)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert created["ResponseMetadata"]["RequestId"]
    assert created["cluster"]["clusterArn"] in ecs.list_clusters()["clusterArns"]
    ecs.delete_cluster(cluster=name)


def test_region_comes_from_the_signature(galley: GalleyProcess) -> None:
    def client(region: str) -> Any:
        return boto3.client("ecs", endpoint_url=galley.endpoint, region_name=region,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(retries={"max_attempts": 1}))

    eu, us = client("eu-west-1"), client("us-east-1")
    name = f"auth-region-{uuid.uuid4().hex[:8]}"
    arn = eu.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    try:
        assert arn.startswith("arn:aws:ecs:eu-west-1:"), arn
        assert arn.endswith(f":cluster/{name}")
        assert arn in eu.list_clusters()["clusterArns"]
        assert all(":eu-west-1:" in a for a in eu.list_clusters()["clusterArns"])
        us_arns = us.list_clusters()["clusterArns"]
        assert arn not in us_arns
        assert not any(a.endswith(f"/{name}") for a in us_arns)
        assert all(":us-east-1:" in a for a in us_arns)
        missing = us.describe_clusters(clusters=[name])
        assert missing["clusters"] == []
        assert missing["failures"][0]["reason"] == "MISSING"
        assert ":us-east-1:" in missing["failures"][0]["arn"]
        assert eu.describe_clusters(clusters=[name])["clusters"][0]["clusterArn"] == arn

        family = f"auth-region-{uuid.uuid4().hex[:8]}"
        td = eu.register_task_definition(family=family, containerDefinitions=[
            {"name": "app", "image": "galley-test/busybox:latest", "memory": 64}])
        assert td["taskDefinition"]["taskDefinitionArn"].startswith("arn:aws:ecs:eu-west-1:")
        with pytest.raises(ClientError) as other_region:
            us.describe_task_definition(taskDefinition=family)
        assert other_region.value.response["Error"]["Code"] == "ClientException"
        assert family not in us.list_task_definition_families(familyPrefix=family)["families"]
        assert family in eu.list_task_definition_families(familyPrefix=family)["families"]
    finally:
        eu.delete_cluster(cluster=name)
