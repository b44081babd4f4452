"""The ECS service: each implemented operation mapped to its control function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from galley.api.model import ServiceModel
from galley.api.server import Request, Service
from galley.app import Galley
from galley.arns import Scope
from galley.control import (
    agent_channel,
    attributes,
    capacity_providers,
    clusters,
    instances,
    services,
    start_task,
    state_changes,
    tags,
    taskdefs,
    tasks,
)

Operation = Callable[[Galley, Scope, dict[str, Any]], dict[str, Any]]

OPERATIONS: dict[str, Operation] = {
    "CreateCluster": clusters.create_cluster,
    "DescribeClusters": clusters.describe_clusters,
    "ListClusters": clusters.list_clusters,
    "UpdateCluster": clusters.update_cluster,
    "UpdateClusterSettings": clusters.update_cluster_settings,
    "DeleteCluster": clusters.delete_cluster,
    "PutClusterCapacityProviders": capacity_providers.put_cluster_capacity_providers,
    "DescribeCapacityProviders": capacity_providers.describe_capacity_providers,
    "RegisterTaskDefinition": taskdefs.register_task_definition,
    "DescribeTaskDefinition": taskdefs.describe_task_definition,
    "ListTaskDefinitions": taskdefs.list_task_definitions,
    "ListTaskDefinitionFamilies": taskdefs.list_task_definition_families,
    "DeregisterTaskDefinition": taskdefs.deregister_task_definition,
    "DeleteTaskDefinitions": taskdefs.delete_task_definitions,
    "RunTask": tasks.run_task,
    "StopTask": tasks.stop_task,
    "DescribeTasks": tasks.describe_tasks,
    "ListTasks": tasks.list_tasks,
    "CreateService": services.create_service,
    "UpdateService": services.update_service,
    "DeleteService": services.delete_service,
    "DescribeServices": services.describe_services,
    "ListServices": services.list_services,
    "RegisterContainerInstance": instances.register_container_instance,
    "DescribeContainerInstances": instances.describe_container_instances,
    "ListContainerInstances": instances.list_container_instances,
    "DeregisterContainerInstance": instances.deregister_container_instance,
    "UpdateContainerInstancesState": instances.update_container_instances_state,
    "DiscoverPollEndpoint": agent_channel.discover_poll_endpoint,
    "SubmitTaskStateChange": state_changes.submit_task_state_change,
    "SubmitContainerStateChange": state_changes.submit_container_state_change,
    "StartTask": start_task.start_task,
    "PutAttributes": attributes.put_attributes,
    "DeleteAttributes": attributes.delete_attributes,
    "ListAttributes": attributes.list_attributes,
    "TagResource": tags.tag_resource,
    "UntagResource": tags.untag_resource,
    "ListTagsForResource": tags.list_tags_for_resource,
}


def ecs_service(app: Galley) -> Service:
    def bind(op: Operation) -> Callable[[Request, dict[str, Any]], dict[str, Any]]:
        return lambda req, params: op(app, req.scope, params)

    return Service(ServiceModel.load("ecs"), {name: bind(op) for name, op in OPERATIONS.items()})
