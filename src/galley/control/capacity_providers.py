"""Capacity providers: the built-in FARGATE and FARGATE_SPOT, and which a cluster may use.

Galley supplies the capacity of both Fargate providers itself (on the local engine, for
`galley up`); a task launched through FARGATE_SPOT is a FARGATE task whose capacityProviderName
says FARGATE_SPOT. A cluster uses a provider in a strategy only once it is associated with it
(CreateCluster or PutClusterCapacityProviders), as in ECS. Auto Scaling group providers
(CreateCapacityProvider) are not offered: EC2 capacity comes from `galley agent` hosts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from galley.app import Galley
from galley.arns import Scope
from galley.control import clusters
from galley.control.common import paginate, with_token
from galley.errors import ApiError, invalid_parameter
from galley.scheduler import capacity
from galley.store import schema as s
from galley.store.db import dumps, loads


def check_cluster_params(params: dict[str, Any]) -> None:
    """capacityProviders and defaultCapacityProviderStrategy of CreateCluster and
    PutClusterCapacityProviders."""
    try:
        capacity.check_cluster(params.get("capacityProviders") or [],
                               params.get("defaultCapacityProviderStrategy") or [])
    except capacity.StrategyError as e:
        raise invalid_parameter(str(e)) from None


def put_cluster_capacity_providers(app: Galley, scope: Scope, params: dict[str, Any]
                                   ) -> dict[str, Any]:
    check_cluster_params(params)
    names = list(params["capacityProviders"])
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params["cluster"])
        removed = set(cluster.get("capacityProviders", [])) - set(names)
        if removed:
            for (doc,) in conn.execute(select(s.services.c.doc).where(
                    s.services.c.cluster_arn == cluster["clusterArn"],
                    s.services.c.status != "INACTIVE")):
                used = {i["capacityProvider"]
                        for d in loads(doc)["deployments"]
                        for i in d.get("capacityProviderStrategy", [])}
                if used & removed:
                    raise ApiError("ResourceInUseException",
                                   "The specified capacity provider is in use and cannot be "
                                   "removed.")
        cluster["capacityProviders"] = names
        cluster["defaultCapacityProviderStrategy"] = capacity.normalized(
            params["defaultCapacityProviderStrategy"])
        conn.execute(update(s.clusters).where(s.clusters.c.arn == cluster["clusterArn"])
                     .values(doc=dumps(cluster)))
    answer = clusters.describe_clusters(app, scope, {"clusters": [cluster["clusterArn"]]})
    return {"cluster": answer["clusters"][0]}


def _provider(scope: Scope, name: str) -> dict[str, Any]:
    return {"capacityProviderArn": f"arn:aws:ecs:{scope.region}:{scope.account}:"
                                   f"capacity-provider/{name}",
            "name": name, "status": "ACTIVE", "tags": []}


def describe_capacity_providers(app: Galley, scope: Scope, params: dict[str, Any]
                                ) -> dict[str, Any]:
    if params.get("cluster"):  # only the built-in providers exist, whatever the cluster
        with app.store.read() as conn:
            clusters.get_active(conn, scope, params["cluster"])
    wanted = params.get("capacityProviders")
    if wanted is None:
        page, token = paginate(list(capacity.FARGATE_PROVIDERS), params, default=10, maximum=10)
        return with_token({"capacityProviders": [_provider(scope, n) for n in page],
                           "failures": []}, token)
    found, failures = [], []
    for ref in wanted:
        name = ref.rsplit("/", 1)[-1] if ref.startswith("arn:") else ref
        if name in capacity.FARGATE_PROVIDERS:
            found.append(_provider(scope, name))
        else:
            failures.append({"arn": ref, "reason": "MISSING"})
    return {"capacityProviders": found, "failures": failures}
