"""The AWS CLI against Galley: the environment `galley up` prints, and --endpoint-url.

The CLI is run as `python -m awscli` (the Python-installed CLI v1) when that works, else as `aws`.
Plus boto3's TasksRunning / TasksStopped waiters with a short delay.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from .conftest import BUSYBOX, describe_task
from .galley_process import GalleyProcess

NETWORK_SHORTHAND = "awsvpcConfiguration={subnets=[subnet-12345]}"
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-12345"]}}


@cache
def aws_command() -> tuple[str, ...]:
    candidates: list[tuple[str, ...]] = [(sys.executable, "-m", "awscli")]
    if shutil.which("aws"):
        candidates.append((str(shutil.which("aws")),))
    for candidate in candidates:
        try:
            r = subprocess.run([*candidate, "--version"], capture_output=True, text=True,
                               timeout=60)
        except OSError:
            continue
        if r.returncode == 0 and "aws-cli/" in (r.stdout + r.stderr):
            return candidate
    pytest.skip("no working AWS CLI (python -m awscli or aws)")


class Cli:
    """Runs `aws ...` with Galley's CLI environment, or with --endpoint-url and no ECS env var."""

    def __init__(self, galley: GalleyProcess, tmp_path: Path, mode: str) -> None:
        self.galley = galley
        self.mode = mode
        env = galley.cli_env()
        # Keep the user's own CLI configuration out of it.
        env.update(AWS_CONFIG_FILE=str(tmp_path / "no-config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
                   AWS_PAGER="")
        env.pop("AWS_PROFILE", None)
        env.pop("AWS_ENDPOINT_URL", None)
        if mode == "endpoint-url":
            env.pop("AWS_ENDPOINT_URL_ECS")
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        extra = ("--endpoint-url", self.galley.endpoint) if self.mode == "endpoint-url" else ()
        r = subprocess.run([*aws_command(), *args, *extra, "--output", "json"], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"aws {' '.join(args)} -> {r.returncode}: {r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        out = self.run(*args).stdout
        return json.loads(out) if out.strip() else None


@pytest.fixture(params=["env", "endpoint-url"])
def cli(request: pytest.FixtureRequest, galley: GalleyProcess, tmp_path: Path) -> Cli:
    return Cli(galley, tmp_path, request.param)


@pytest.fixture
def env_cli(galley: GalleyProcess, tmp_path: Path) -> Cli:
    return Cli(galley, tmp_path, "env")


def write_td(tmp_path: Path, family: str) -> Path:
    path = tmp_path / "taskdef.json"
    path.write_text(json.dumps({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                                  "stopTimeout": 2}],
    }))
    return path


def test_the_cli_runs() -> None:
    r = subprocess.run([*aws_command(), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "aws-cli/" in r.stdout + r.stderr


def test_cluster_commands(cli: Cli, ecs: Any) -> None:
    name = f"cli-{cli.mode}-{uuid.uuid4().hex[:8]}"
    created = cli.json("ecs", "create-cluster", "--cluster-name", name)["cluster"]
    assert created["clusterName"] == name
    assert created["status"] == "ACTIVE"
    assert created["clusterArn"].startswith("arn:aws:ecs:us-east-1:")
    described = cli.json("ecs", "describe-clusters", "--clusters", name, "nope-" + name)
    assert [c["clusterArn"] for c in described["clusters"]] == [created["clusterArn"]]
    assert [f["reason"] for f in described["failures"]] == ["MISSING"]
    assert created["clusterArn"] in cli.json("ecs", "list-clusters")["clusterArns"]
    # The CLI shows ECS errors by code and message.
    missing = cli.run("ecs", "delete-cluster", "--cluster", "nope-" + name, check=False)
    assert missing.returncode != 0
    assert "ClusterNotFoundException" in missing.stderr
    assert "Cluster not found." in missing.stderr
    deleted = cli.json("ecs", "delete-cluster", "--cluster", name)["cluster"]
    assert deleted["status"] == "INACTIVE"
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["status"] == "INACTIVE"


def test_task_definition_run_wait_stop(cli: Cli, cluster: str, tmp_path: Path) -> None:
    family = f"cli-td-{cli.mode}-{uuid.uuid4().hex[:8]}"
    path = write_td(tmp_path, family)
    td = cli.json("ecs", "register-task-definition",
                  "--cli-input-json", f"file://{path}")["taskDefinition"]
    assert (td["family"], td["revision"], td["status"]) == (family, 1, "ACTIVE")
    assert td["networkMode"] == "awsvpc"
    listed = cli.json("ecs", "list-task-definitions", "--family-prefix", family)
    assert listed["taskDefinitionArns"] == [td["taskDefinitionArn"]]
    described = cli.json("ecs", "describe-task-definition", "--task-definition", family)
    assert described["taskDefinition"]["taskDefinitionArn"] == td["taskDefinitionArn"]

    run = cli.json("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                   "--launch-type", "FARGATE", "--network-configuration", NETWORK_SHORTHAND)
    assert run["failures"] == []
    arn = run["tasks"][0]["taskArn"]
    assert run["tasks"][0]["launchType"] == "FARGATE"
    cli.run("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", arn)
    running = cli.json("ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn)
    assert running["tasks"][0]["lastStatus"] == "RUNNING"

    stopped = cli.json("ecs", "stop-task", "--cluster", cluster, "--task", arn)["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    cli.run("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", arn)
    final = cli.json("ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn)["tasks"][0]
    assert final["lastStatus"] == "STOPPED"
    assert final["stoppedReason"] == "Task stopped by user"
    assert final["stopCode"] == "UserInitiated"


def test_list_tasks_pagination(env_cli: Cli, ecs: Any, cluster: str, tmp_path: Path) -> None:
    family = f"cli-page-{uuid.uuid4().hex[:8]}"
    env_cli.json("ecs", "register-task-definition",
                 "--cli-input-json", f"file://{write_td(tmp_path, family)}")
    run = env_cli.json("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                       "--count", "4", "--launch-type", "FARGATE",
                       "--network-configuration", NETWORK_SHORTHAND)
    arns = {t["taskArn"] for t in run["tasks"]}
    assert len(arns) == 4

    first = env_cli.json("ecs", "list-tasks", "--cluster", cluster, "--max-items", "3")
    assert len(first["taskArns"]) == 3
    assert first.get("NextToken")
    rest = env_cli.json("ecs", "list-tasks", "--cluster", cluster, "--max-items", "3",
                        "--starting-token", first["NextToken"])
    assert len(rest["taskArns"]) == 1
    assert not rest.get("NextToken")
    assert set(first["taskArns"]) | set(rest["taskArns"]) == arns

    small_pages = env_cli.json("ecs", "list-tasks", "--cluster", cluster, "--page-size", "1")
    assert set(small_pages["taskArns"]) == arns and len(small_pages["taskArns"]) == 4
    mixed = env_cli.json("ecs", "list-tasks", "--cluster", cluster, "--page-size", "1",
                         "--max-items", "2")
    assert len(mixed["taskArns"]) == 2 and mixed.get("NextToken")
    assert set(mixed["taskArns"]) <= arns


def test_tags(cli: Cli, cluster: str, ecs: Any) -> None:
    arn = ecs.describe_clusters(clusters=[cluster])["clusters"][0]["clusterArn"]
    cli.run("ecs", "tag-resource", "--resource-arn", arn,
            "--tags", "key=team,value=galley", "key=env,value=test")
    tags = cli.json("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert sorted((t["key"], t["value"]) for t in tags) == [("env", "test"), ("team", "galley")]
    cli.run("ecs", "untag-resource", "--resource-arn", arn, "--tag-keys", "env")
    tags = cli.json("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert tags == [{"key": "team", "value": "galley"}]


def test_deregister_then_delete_task_definition(cli: Cli, tmp_path: Path) -> None:
    family = f"cli-del-{cli.mode}-{uuid.uuid4().hex[:8]}"
    path = write_td(tmp_path, family)
    arn = cli.json("ecs", "register-task-definition",
                   "--cli-input-json", f"file://{path}")["taskDefinition"]["taskDefinitionArn"]
    out = cli.json("ecs", "deregister-task-definition", "--task-definition", f"{family}:1")
    assert out["taskDefinition"]["status"] == "INACTIVE"
    assert out["taskDefinition"]["taskDefinitionArn"] == arn
    inactive = cli.json("ecs", "list-task-definitions", "--family-prefix", family,
                        "--status", "INACTIVE")
    assert inactive["taskDefinitionArns"] == [arn]
    deleted = cli.json("ecs", "delete-task-definitions", "--task-definitions", f"{family}:1")
    assert deleted["failures"] == []
    assert [t["status"] for t in deleted["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
    active = cli.json("ecs", "list-task-definitions", "--family-prefix", family)
    assert active["taskDefinitionArns"] == []


def test_boto3_waiters(ecs: Any, cluster: str) -> None:
    td = ecs.register_task_definition(
        family=f"cli-waiter-{uuid.uuid4().hex[:8]}", networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                               "stopTimeout": 2}])["taskDefinition"]["taskDefinitionArn"]
    arns = [t["taskArn"] for t in ecs.run_task(
        cluster=cluster, taskDefinition=td, launchType="FARGATE", count=2,
        networkConfiguration=NETWORK)["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster=cluster, tasks=arns,
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert all(describe_task(ecs, cluster, a)["lastStatus"] == "RUNNING" for a in arns)
    for arn in arns:
        ecs.stop_task(cluster=cluster, task=arn)
    ecs.get_waiter("tasks_stopped").wait(cluster=cluster, tasks=arns,
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    for arn in arns:
        final = describe_task(ecs, cluster, arn)
        assert final["lastStatus"] == "STOPPED"
        assert final["stoppedReason"] == "Task stopped by user"
