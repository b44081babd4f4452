"""Wire-exact control-plane behaviour through boto3: clusters, task definitions, RunTask & friends.

Anything that runs uses a FARGATE awsvpc busybox definition with stopTimeout 2.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from botocore.exceptions import ClientError

from .conftest import BUSYBOX, describe_task, wait_task_status
from .galley_process import GalleyProcess

NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-12345"]}}
SLEEP = ["sleep", "3600"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fargate_td(ecs: Any, family: str, **extra: Any) -> dict[str, Any]:
    container = {"name": "app", "image": BUSYBOX, "command": SLEEP, "stopTimeout": 2}
    container.update(extra.pop("container", {}))
    return ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512", containerDefinitions=[container], **extra)["taskDefinition"]


def bridge_td(ecs: Any, family: str, **extra: Any) -> dict[str, Any]:
    return ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "app", "image": BUSYBOX, "memory": 64, "command": SLEEP, "stopTimeout": 2}],
        **extra)["taskDefinition"]


def run_fargate(ecs: Any, cluster: str, td: str, **extra: Any) -> dict[str, Any]:
    out = ecs.run_task(cluster=cluster, taskDefinition=td, launchType="FARGATE",
                       networkConfiguration=NETWORK, **extra)
    assert out["failures"] == [], out["failures"]
    return out


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    err = info.value.response["Error"]
    assert 400 <= info.value.response["ResponseMetadata"]["HTTPStatusCode"] < 500
    return err["Code"], err["Message"]


def all_pages(call: Any, key: str, **params: Any) -> tuple[list[Any], int]:
    """Follow nextToken by hand; return every item and the number of pages."""
    items: list[Any] = []
    pages = 0
    token = None
    while True:
        page = call(**params, **({"nextToken": token} if token else {}))
        pages += 1
        assert len(page[key]) <= params.get("maxResults", 100)
        items += page[key]
        token = page.get("nextToken")
        if not token:
            return items, pages
        assert pages < 1000


@pytest.fixture
def account(ecs: Any, cluster: str) -> str:
    return str(ecs.describe_clusters(clusters=[cluster])["clusters"][0]["clusterArn"].split(":")[4])


@pytest.fixture
def own_clusters(ecs: Any) -> Iterator[list[str]]:
    """Clusters a test creates itself (names appended); their tasks are stopped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        found = ecs.describe_clusters(clusters=[name])["clusters"]
        if not found or found[0]["status"] != "ACTIVE":
            continue
        for arn in ecs.list_tasks(cluster=name)["taskArns"]:
            ecs.stop_task(cluster=name, task=arn)


# ---- clusters --------------------------------------------------------------------------------


def test_create_cluster_is_idempotent(ecs: Any, own_clusters: list[str]) -> None:
    name = unique("cp-idem")
    own_clusters.append(name)
    first = ecs.create_cluster(clusterName=name, tags=[{"key": "team", "value": "a"}])["cluster"]
    assert first["clusterArn"].endswith(f":cluster/{name}")
    assert first["clusterArn"].startswith("arn:aws:ecs:us-east-1:")
    assert first["clusterName"] == name
    assert first["status"] == "ACTIVE"
    for count in ("registeredContainerInstancesCount", "runningTasksCount", "pendingTasksCount",
                  "activeServicesCount"):
        assert first[count] == 0, count
    assert {"name": "containerInsights", "value": "disabled"} in first["settings"]
    second = ecs.create_cluster(clusterName=name)["cluster"]
    assert second["clusterArn"] == first["clusterArn"]
    assert second["status"] == "ACTIVE"
    assert ecs.list_clusters()["clusterArns"].count(first["clusterArn"]) == 1
    described = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0]
    assert described["tags"] == [{"key": "team", "value": "a"}]


def test_create_cluster_rejects_a_bad_name(ecs: Any) -> None:
    code, _ = error_of(ecs.create_cluster, clusterName="not a valid name!")
    assert code == "InvalidParameterException"


def test_describe_clusters_reports_missing_and_counts(ecs: Any, cluster: str,
                                                      account: str) -> None:
    td = fargate_td(ecs, unique("cp-counts"))
    arn = run_fargate(ecs, cluster, td["taskDefinitionArn"])["tasks"][0]["taskArn"]
    wait_task_status(ecs, cluster, arn, "RUNNING")
    missing = unique("cp-missing")
    out = ecs.describe_clusters(clusters=[cluster, missing])
    assert out["failures"] == [
        {"arn": f"arn:aws:ecs:us-east-1:{account}:cluster/{missing}", "reason": "MISSING"}]
    assert len(out["clusters"]) == 1
    found = out["clusters"][0]
    assert found["clusterName"] == cluster
    assert found["runningTasksCount"] == 1
    assert found["pendingTasksCount"] == 0
    assert found["activeServicesCount"] == 0
    by_arn = ecs.describe_clusters(clusters=[found["clusterArn"]])["clusters"]
    assert [c["clusterArn"] for c in by_arn] == [found["clusterArn"]]


def test_list_clusters_paginates(ecs: Any, own_clusters: list[str]) -> None:
    names = [unique("cp-page") for _ in range(3)]
    for name in names:
        own_clusters.append(name)
        ecs.create_cluster(clusterName=name)
    everything = ecs.list_clusters()["clusterArns"]
    paged, pages = all_pages(ecs.list_clusters, "clusterArns", maxResults=1)
    assert paged == everything
    assert pages == len(everything)
    assert len(set(paged)) == len(paged)
    for name in names:
        assert any(a.endswith(f":cluster/{name}") for a in paged)
    code, _ = error_of(ecs.list_clusters, nextToken="not-a-real-token")
    assert code == "InvalidParameterException"
    for bad in (0, 101):
        code, _ = error_of(ecs.list_clusters, maxResults=bad)
        assert code == "InvalidParameterException"


def test_update_cluster_settings(ecs: Any, cluster: str) -> None:
    enabled = {"name": "containerInsights", "value": "enabled"}
    updated = ecs.update_cluster(cluster=cluster, settings=[enabled])["cluster"]
    assert updated["clusterName"] == cluster
    assert enabled in updated["settings"]
    described = ecs.describe_clusters(clusters=[cluster], include=["SETTINGS"])["clusters"][0]
    assert enabled in described["settings"]
    disabled = {"name": "containerInsights", "value": "disabled"}
    again = ecs.update_cluster_settings(cluster=cluster, settings=[disabled])["cluster"]
    assert disabled in again["settings"] and enabled not in again["settings"]
    described = ecs.describe_clusters(clusters=[cluster], include=["SETTINGS"])["clusters"][0]
    assert disabled in described["settings"]


def test_delete_cluster_refusals_then_inactive(ecs: Any, own_clusters: list[str]) -> None:
    name = unique("cp-delete")
    own_clusters.append(name)
    arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    td = fargate_td(ecs, unique("cp-delete"))
    task = run_fargate(ecs, name, td["taskDefinitionArn"])["tasks"][0]["taskArn"]
    wait_task_status(ecs, name, task, "RUNNING")

    code, message = error_of(ecs.delete_cluster, cluster=name)
    assert (code, message) == ("ClusterContainsTasksException",
                               "The Cluster cannot be deleted while Tasks are active.")
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["status"] == "ACTIVE"

    ecs.stop_task(cluster=name, task=task)
    wait_task_status(ecs, name, task, "STOPPED", timeout=60)
    deleted = ecs.delete_cluster(cluster=name)["cluster"]
    assert deleted["clusterArn"] == arn
    assert deleted["status"] == "INACTIVE"

    described = ecs.describe_clusters(clusters=[name])
    assert described["failures"] == []
    assert [(c["clusterArn"], c["status"]) for c in described["clusters"]] == [(arn, "INACTIVE")]
    assert arn not in ecs.list_clusters()["clusterArns"]
    assert error_of(ecs.run_task, cluster=name, taskDefinition=td["taskDefinitionArn"],
                    launchType="FARGATE", networkConfiguration=NETWORK) == (
        "ClusterNotFoundException", "Cluster not found.")
    assert error_of(ecs.list_tasks, cluster=name) == ("ClusterNotFoundException",
                                                      "Cluster not found.")
    assert error_of(ecs.delete_cluster, cluster=name)[0] == "ClusterNotFoundException"

    again = ecs.create_cluster(clusterName=name)["cluster"]
    assert (again["clusterArn"], again["status"]) == (arn, "ACTIVE")


# ---- task definitions ------------------------------------------------------------------------


def test_revisions_increment_and_describe_forms(ecs: Any) -> None:
    family = unique("cp-revs")
    registered = [fargate_td(ecs, family, tags=[{"key": "rev", "value": str(i)}])
                  for i in range(3)]
    assert [t["revision"] for t in registered] == [1, 2, 3]
    first = registered[0]
    assert first["taskDefinitionArn"].endswith(f":task-definition/{family}:1")
    assert first["status"] == "ACTIVE"
    assert first["family"] == family
    assert first["networkMode"] == "awsvpc"
    assert first["requiresCompatibilities"] == ["FARGATE"]
    assert "FARGATE" in first["compatibilities"]
    assert (first["cpu"], first["memory"]) == ("256", "512")
    assert first["containerDefinitions"][0]["essential"] is True
    assert isinstance(first["registeredAt"], datetime.datetime)

    def describe(ref: str, **kw: Any) -> dict[str, Any]:
        return ecs.describe_task_definition(taskDefinition=ref, **kw)

    assert describe(family)["taskDefinition"]["revision"] == 3
    assert describe(f"{family}:2")["taskDefinition"]["revision"] == 2
    assert describe(first["taskDefinitionArn"])["taskDefinition"]["revision"] == 1
    with_tags = describe(f"{family}:2", include=["TAGS"])
    assert with_tags["tags"] == [{"key": "rev", "value": "1"}]
    assert "tags" not in describe(f"{family}:2") or describe(f"{family}:2")["tags"] == []

    ecs.deregister_task_definition(taskDefinition=f"{family}:3")
    assert describe(family)["taskDefinition"]["revision"] == 2  # latest ACTIVE
    assert describe(f"{family}:3")["taskDefinition"]["status"] == "INACTIVE"
    assert error_of(describe, f"{family}:9") == ("ClientException",
                                                 "Unable to describe task definition.")


def test_list_task_definitions_filters_sort_and_pagination(ecs: Any) -> None:
    base = unique("cp-list")
    a, b = f"{base}-a", f"{base}-b"
    arns_a = [fargate_td(ecs, a)["taskDefinitionArn"] for _ in range(3)]
    arn_b = fargate_td(ecs, b)["taskDefinitionArn"]
    ecs.deregister_task_definition(taskDefinition=arns_a[0])

    def listed(**kw: Any) -> list[str]:
        return list(ecs.list_task_definitions(**kw)["taskDefinitionArns"])

    assert listed(familyPrefix=a) == arns_a[1:]
    assert listed(familyPrefix=a, status="ACTIVE") == arns_a[1:]
    assert listed(familyPrefix=a, status="INACTIVE") == [arns_a[0]]
    assert listed(familyPrefix=a, sort="DESC") == [arns_a[2], arns_a[1]]
    assert listed(familyPrefix=b) == [arn_b]
    assert listed(familyPrefix=base) == []  # familyPrefix is the full family name
    everything = listed()
    assert everything.index(arns_a[1]) < everything.index(arns_a[2]) < everything.index(arn_b)
    paged, pages = all_pages(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=a,
                             maxResults=1)
    assert (paged, pages) == (arns_a[1:], 2)
    paged_desc, _ = all_pages(ecs.list_task_definitions, "taskDefinitionArns", maxResults=1,
                              familyPrefix=a, sort="DESC")
    assert paged_desc == [arns_a[2], arns_a[1]]


def test_list_task_definition_families_by_status(ecs: Any) -> None:
    base = unique("cp-fam")
    live, gone = f"{base}-live", f"{base}-gone"
    fargate_td(ecs, live)
    old = fargate_td(ecs, gone)
    ecs.deregister_task_definition(taskDefinition=old["taskDefinitionArn"])

    def families(**kw: Any) -> list[str]:
        return list(ecs.list_task_definition_families(familyPrefix=base, **kw)["families"])

    assert families() == sorted([live, gone])  # both by default
    assert families(status="ALL") == sorted([live, gone])
    assert families(status="ACTIVE") == [live]
    assert families(status="INACTIVE") == [gone]
    paged, pages = all_pages(ecs.list_task_definition_families, "families", familyPrefix=base,
                             status="ALL", maxResults=1)
    assert (paged, pages) == (sorted([live, gone]), 2)


def test_deregister_makes_inactive_and_run_task_refuses_it(ecs: Any, cluster: str) -> None:
    family = unique("cp-dereg")
    td = fargate_td(ecs, family)
    out = ecs.deregister_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]
    assert out["status"] == "INACTIVE"
    assert out["taskDefinitionArn"] == td["taskDefinitionArn"]
    assert out["deregisteredAt"]
    again = ecs.deregister_task_definition(taskDefinition=td["taskDefinitionArn"])
    assert again["taskDefinition"]["status"] == "INACTIVE"
    assert error_of(ecs.run_task, cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                    launchType="FARGATE", networkConfiguration=NETWORK) == (
        "InvalidParameterException", "TaskDefinition is inactive")
    assert error_of(ecs.deregister_task_definition, taskDefinition=family)[0] == "ClientException"
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []


def test_delete_task_definitions(ecs: Any) -> None:
    family = unique("cp-del")
    td = fargate_td(ecs, family)
    arn = td["taskDefinitionArn"]
    refused = ecs.delete_task_definitions(taskDefinitions=[arn])
    assert refused["taskDefinitions"] == []
    assert len(refused["failures"]) == 1 and refused["failures"][0]["arn"] == arn
    assert refused["failures"][0].get("reason")
    assert ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["status"] == "ACTIVE"

    ecs.deregister_task_definition(taskDefinition=arn)
    deleted = ecs.delete_task_definitions(taskDefinitions=[f"{family}:1"])
    assert deleted["failures"] == []
    assert [(t["taskDefinitionArn"], t["status"]) for t in deleted["taskDefinitions"]] == [
        (arn, "DELETE_IN_PROGRESS")]
    assert arn in ecs.list_task_definitions(familyPrefix=family,
                                            status="DELETE_IN_PROGRESS")["taskDefinitionArns"]
    assert ecs.list_task_definitions(familyPrefix=family, status="INACTIVE")[
        "taskDefinitionArns"] == []

    # The revision number is never reused, even though revision 1 is gone.
    assert fargate_td(ecs, family)["revision"] == 2


# ---- RunTask errors --------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 11])
def test_run_task_count_bounds(ecs: Any, cluster: str, count: int) -> None:
    td = fargate_td(ecs, unique("cp-count"))
    code, _ = error_of(ecs.run_task, cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                       launchType="FARGATE", networkConfiguration=NETWORK, count=count)
    assert code == "InvalidParameterException"
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []


def test_run_task_ec2_without_container_instances(ecs: Any, cluster: str) -> None:
    td = bridge_td(ecs, unique("cp-ec2"))
    expected = ("InvalidParameterException", "No Container Instances were found in your cluster.")
    assert error_of(ecs.run_task, cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                    launchType="EC2") == expected
    # No launch type and no default capacity provider strategy means EC2.
    assert error_of(ecs.run_task, cluster=cluster,
                    taskDefinition=td["taskDefinitionArn"]) == expected


def test_run_task_fargate_with_a_bridge_definition(ecs: Any, cluster: str) -> None:
    td = bridge_td(ecs, unique("cp-bridge"))
    assert error_of(ecs.run_task, cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                    launchType="FARGATE") == (
        "InvalidParameterException", "Task definition does not support launch_type FARGATE.")


def test_run_task_awsvpc_needs_network_configuration(ecs: Any, cluster: str) -> None:
    td = fargate_td(ecs, unique("cp-nonet"))
    assert error_of(ecs.run_task, cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                    launchType="FARGATE") == (
        "InvalidParameterException",
        "Network Configuration must be provided when networkMode 'awsvpc' is specified.")


def test_run_task_launch_type_and_capacity_provider_strategy(ecs: Any, cluster: str) -> None:
    td = fargate_td(ecs, unique("cp-both"))
    code, _ = error_of(ecs.run_task, cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                       launchType="FARGATE", networkConfiguration=NETWORK,
                       capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    assert code == "InvalidParameterException"
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []


def test_run_task_client_token_is_idempotent(ecs: Any, cluster: str) -> None:
    td = fargate_td(ecs, unique("cp-token"))["taskDefinitionArn"]
    token = uuid.uuid4().hex
    first = run_fargate(ecs, cluster, td, clientToken=token)["tasks"]
    second = run_fargate(ecs, cluster, td, clientToken=token)["tasks"]
    assert len(first) == 1
    assert [t["taskArn"] for t in second] == [t["taskArn"] for t in first]
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == [first[0]["taskArn"]]
    code, _ = error_of(ecs.run_task, cluster=cluster, taskDefinition=td, launchType="FARGATE",
                       networkConfiguration=NETWORK, clientToken=token, startedBy="someone-else")
    assert code == "ConflictException"
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == [first[0]["taskArn"]]


def test_overrides_reach_the_container(ecs: Any, cluster: str,
                                       docker_client: docker.DockerClient) -> None:
    td = fargate_td(ecs, unique("cp-override"),
                    container={"environment": [{"name": "FROM_DEF", "value": "def"}]})
    command = ["sh", "-c", "sleep 3601"]
    overrides = {"containerOverrides": [{
        "name": "app", "command": command,
        "environment": [{"name": "GALLEY_OVERRIDE", "value": "yes"}]}]}
    task = run_fargate(ecs, cluster, td["taskDefinitionArn"], overrides=overrides)["tasks"][0]
    assert task["overrides"]["containerOverrides"][0]["command"] == command
    running = wait_task_status(ecs, cluster, task["taskArn"], "RUNNING")
    container = docker_client.containers.get(running["containers"][0]["runtimeId"])
    assert container.attrs["Config"]["Cmd"] == command
    env = container.attrs["Config"]["Env"]
    assert "GALLEY_OVERRIDE=yes" in env
    assert "FROM_DEF=def" in env


def test_run_task_tags_and_include(ecs: Any, cluster: str) -> None:
    td = fargate_td(ecs, unique("cp-tags"))
    tags = [{"key": "team", "value": "galley"}, {"key": "purpose", "value": "test"}]
    arn = run_fargate(ecs, cluster, td["taskDefinitionArn"], tags=tags)["tasks"][0]["taskArn"]
    plain = describe_task(ecs, cluster, arn)
    assert plain.get("tags", []) == []
    with_tags = ecs.describe_tasks(cluster=cluster, tasks=[arn], include=["TAGS"])["tasks"][0]
    key = sorted
    assert key(with_tags["tags"], key=lambda t: t["key"]) == key(tags, key=lambda t: t["key"])
    listed = ecs.list_tags_for_resource(resourceArn=arn)["tags"]
    assert key(listed, key=lambda t: t["key"]) == key(tags, key=lambda t: t["key"])


def test_describe_tasks_empty_list(ecs: Any, cluster: str) -> None:
    assert error_of(ecs.describe_tasks, cluster=cluster, tasks=[]) == (
        "InvalidParameterException", "Tasks cannot be empty.")


def test_describe_tasks_missing_and_short_forms(ecs: Any, cluster: str) -> None:
    td = fargate_td(ecs, unique("cp-desc"))
    arn = run_fargate(ecs, cluster, td["taskDefinitionArn"])["tasks"][0]["taskArn"]
    task_id = arn.rsplit("/", 1)[1]
    assert len(task_id) == 32 and all(c in "0123456789abcdef" for c in task_id)
    missing_id = uuid.uuid4().hex
    out = ecs.describe_tasks(cluster=cluster, tasks=[task_id, missing_id])
    assert [t["taskArn"] for t in out["tasks"]] == [arn]
    assert len(out["failures"]) == 1
    assert out["failures"][0]["reason"] == "MISSING"
    assert out["failures"][0]["arn"].endswith(missing_id)


def test_list_tasks_filters(ecs: Any, cluster: str) -> None:
    fam_a, fam_b = unique("cp-lt-a"), unique("cp-lt-b")
    td_a = fargate_td(ecs, fam_a)["taskDefinitionArn"]
    td_b = fargate_td(ecs, fam_b)["taskDefinitionArn"]
    a1 = run_fargate(ecs, cluster, td_a, startedBy="alice")["tasks"][0]["taskArn"]
    a2 = run_fargate(ecs, cluster, td_a)["tasks"][0]["taskArn"]
    b1 = run_fargate(ecs, cluster, td_b)["tasks"][0]["taskArn"]
    ecs.stop_task(cluster=cluster, task=a2)

    def listed(**kw: Any) -> set[str]:
        return set(ecs.list_tasks(cluster=cluster, **kw)["taskArns"])

    assert listed() == {a1, b1}
    assert listed(desiredStatus="RUNNING") == {a1, b1}
    assert listed(family=fam_a) == {a1}
    assert listed(family=fam_b) == {b1}
    assert listed(startedBy="alice") == {a1}
    assert listed(startedBy="bob") == set()
    assert listed(launchType="FARGATE") == {a1, b1}
    assert listed(launchType="EC2") == set()
    assert listed(desiredStatus="STOPPED") == {a2}
    assert listed(family=fam_a, desiredStatus="STOPPED") == {a2}
    assert listed(desiredStatus="PENDING") == set()
    paged, pages = all_pages(ecs.list_tasks, "taskArns", cluster=cluster, maxResults=1)
    assert set(paged) == {a1, b1} and pages == 2


def test_stop_task_reports_the_user_stop(ecs: Any, galley: GalleyProcess, cluster: str) -> None:
    td = fargate_td(ecs, unique("cp-stop"))
    arn = run_fargate(ecs, cluster, td["taskDefinitionArn"])["tasks"][0]["taskArn"]
    wait_task_status(ecs, cluster, arn, "RUNNING")
    stopped = ecs.stop_task(cluster=cluster, task=arn)["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    final = wait_task_status(ecs, cluster, arn, "STOPPED", timeout=60)
    assert final["stoppedReason"] == "Task stopped by user"
    assert final["stopCode"] == "UserInitiated"
    assert error_of(ecs.stop_task, cluster=cluster, task=uuid.uuid4().hex) == (
        "InvalidParameterException", "The referenced task was not found.")
