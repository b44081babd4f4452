"""Capacity providers on the built-in capacity: FARGATE and FARGATE_SPOT, the cluster's default
strategy, and base/weight splits on RunTask and services (real tasks on the local engine)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import AWSVPC, BUSYBOX, register_fargate, wait_for

NOT_ASSOCIATED = (
    "The specified capacity provider strategy cannot contain a capacity provider that is not "
    "associated with the cluster. Associate the capacity provider with the cluster or specify a "
    "valid capacity provider and try again.")
BASE_AND_WEIGHTS = [{"capacityProvider": "FARGATE", "base": 1, "weight": 1},
                    {"capacityProvider": "FARGATE_SPOT", "weight": 3}]


def sleeper_td(ecs: Any, family: str) -> str:
    return register_fargate(ecs, family, [{"name": "app", "image": BUSYBOX, "stopTimeout": 2,
                                           "command": ["sleep", "3600"]}])


def error_of(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call(**params)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def providers_of(tasks: list[dict[str, Any]]) -> Counter[str]:
    return Counter(t.get("capacityProviderName", "") for t in tasks)


def associate(ecs: Any, cluster: str, default: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(ecs.put_cluster_capacity_providers(
        cluster=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=default)["cluster"])


def test_built_in_providers_are_described(ecs: Any) -> None:
    described = ecs.describe_capacity_providers()["capacityProviders"]
    assert [p["name"] for p in described] == ["FARGATE", "FARGATE_SPOT"]
    assert all(p["status"] == "ACTIVE" and p["capacityProviderArn"].endswith(
        "capacity-provider/" + p["name"]) for p in described)
    answer = ecs.describe_capacity_providers(capacityProviders=["FARGATE_SPOT", "MY_ASG"])
    assert [p["name"] for p in answer["capacityProviders"]] == ["FARGATE_SPOT"]
    assert answer["failures"] == [{"arn": "MY_ASG", "reason": "MISSING"}]


def test_a_strategy_needs_providers_associated_with_the_cluster(ecs: Any, cluster: str) -> None:
    td = sleeper_td(ecs, "cp-unassociated")
    assert error_of(ecs.run_task, cluster=cluster, taskDefinition=td,
                    networkConfiguration=AWSVPC,
                    capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
                    ) == ("InvalidParameterException", NOT_ASSOCIATED)
    assert error_of(ecs.put_cluster_capacity_providers, cluster=cluster,
                    capacityProviders=["MY_ASG"], defaultCapacityProviderStrategy=[]
                    )[0] == "InvalidParameterException"
    code, message = error_of(ecs.put_cluster_capacity_providers, cluster=cluster,
                             capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=[
                                 {"capacityProvider": "FARGATE", "weight": 0}])
    assert code == "InvalidParameterException" and "weight value greater than zero" in message
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []
    shown = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert shown["capacityProviders"] == [] and shown["defaultCapacityProviderStrategy"] == []


def test_create_cluster_with_providers_and_a_default_strategy(ecs: Any) -> None:
    created = ecs.create_cluster(clusterName="cp-created", capacityProviders=["FARGATE_SPOT"],
                                 defaultCapacityProviderStrategy=[
                                     {"capacityProvider": "FARGATE_SPOT", "weight": 2}])["cluster"]
    assert created["capacityProviders"] == ["FARGATE_SPOT"]
    assert created["defaultCapacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 2, "base": 0}]
    code, message = error_of(ecs.create_cluster, clusterName="cp-bad",
                             defaultCapacityProviderStrategy=[
                                 {"capacityProvider": "FARGATE", "weight": 1}])
    assert (code, message) == ("InvalidParameterException", NOT_ASSOCIATED)
    assert ecs.describe_clusters(clusters=["cp-bad"])["failures"][0]["reason"] == "MISSING"
    ecs.delete_cluster(cluster="cp-created")


def test_run_task_splits_by_base_and_weight(ecs: Any, cluster: str) -> None:
    td = sleeper_td(ecs, "cp-split")
    shown = associate(ecs, cluster, [])
    assert shown["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    result = ecs.run_task(cluster=cluster, taskDefinition=td, networkConfiguration=AWSVPC,
                          count=5, capacityProviderStrategy=BASE_AND_WEIGHTS)
    assert result["failures"] == []
    # base 1 on FARGATE, then the other 4 by weight 1:3 (FARGATE is 1 beyond its base)
    assert providers_of(result["tasks"]) == Counter({"FARGATE": 2, "FARGATE_SPOT": 3})
    assert {t["launchType"] for t in result["tasks"]} == {"FARGATE"}
    arns = [t["taskArn"] for t in result["tasks"]]
    running = wait_for(lambda: (ts := ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"])
                       and all(t["lastStatus"] == "RUNNING" for t in ts) and ts, timeout=90)
    assert providers_of(running) == Counter({"FARGATE": 2, "FARGATE_SPOT": 3})


def test_cluster_default_strategy_applies_without_a_launch_type(ecs: Any, cluster: str) -> None:
    td = sleeper_td(ecs, "cp-default")
    shown = associate(ecs, cluster, [{"capacityProvider": "FARGATE_SPOT", "weight": 1}])
    assert shown["defaultCapacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}]
    task = ecs.run_task(cluster=cluster, taskDefinition=td,
                        networkConfiguration=AWSVPC)["tasks"][0]
    assert task["capacityProviderName"] == "FARGATE_SPOT" and task["launchType"] == "FARGATE"
    explicit = ecs.run_task(cluster=cluster, taskDefinition=td, networkConfiguration=AWSVPC,
                            launchType="FARGATE")["tasks"][0]
    assert "capacityProviderName" not in explicit  # a launch type bypasses the strategy


def test_service_keeps_its_split_as_it_scales(ecs: Any, cluster: str) -> None:
    td = sleeper_td(ecs, "cp-service")
    associate(ecs, cluster, [])
    created = ecs.create_service(cluster=cluster, serviceName="spotty", taskDefinition=td,
                                 desiredCount=4, networkConfiguration=AWSVPC,
                                 capacityProviderStrategy=BASE_AND_WEIGHTS)["service"]
    assert "launchType" not in created
    assert created["capacityProviderStrategy"][1] == {"capacityProvider": "FARGATE_SPOT",
                                                      "weight": 3, "base": 0}

    def service_tasks(n: int) -> list[dict[str, Any]] | None:
        arns = ecs.list_tasks(cluster=cluster, serviceName="spotty")["taskArns"]
        if len(arns) != n:
            return None
        return list(ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"])

    four = wait_for(lambda: service_tasks(4), timeout=60)
    assert providers_of(four) == Counter({"FARGATE": 2, "FARGATE_SPOT": 2})
    ecs.update_service(cluster=cluster, service="spotty", desiredCount=9)
    nine = wait_for(lambda: service_tasks(9), timeout=60)
    assert providers_of(nine) == Counter({"FARGATE": 3, "FARGATE_SPOT": 6})

    code, message = error_of(ecs.put_cluster_capacity_providers, cluster=cluster,
                             capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=[])
    assert (code, message) == ("ResourceInUseException",
                               "The specified capacity provider is in use and cannot be removed.")
    ecs.delete_service(cluster=cluster, service="spotty", force=True)
