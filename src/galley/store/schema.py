"""The store's tables.

Each ECS resource is one row: the columns the API filters and sorts on, plus `doc`, the resource
exactly as Describe* returns it (JSON). Counters such as a cluster's runningTasksCount are derived
from the rows at read time, never kept twice.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

clusters = Table(
    "clusters",
    metadata,
    Column("arn", String, primary_key=True),
    Column("region", String, nullable=False),
    Column("name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("doc", Text, nullable=False),
)

# Revisions are never reused, even after deletion: the family row remembers the last one handed out.
families = Table(
    "families",
    metadata,
    Column("region", String, primary_key=True),
    Column("family", String, primary_key=True),
    Column("last_revision", Integer, nullable=False),
)

task_definitions = Table(
    "task_definitions",
    metadata,
    Column("arn", String, primary_key=True),
    Column("region", String, nullable=False),
    Column("family", String, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("doc", Text, nullable=False),
    UniqueConstraint("region", "family", "revision"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("arn", String, primary_key=True),
    Column("cluster_arn", String, nullable=False),
    Column("family", String, nullable=False),
    Column("started_by", String),
    Column("service_name", String),
    Column("launch_type", String),
    # Which agent runs it: the built-in FARGATE capacity or a container instance's id.
    Column("agent_id", String),
    Column("desired_status", String, nullable=False),
    Column("last_status", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("version", Integer, nullable=False),
    Column("ever_healthy", Integer, nullable=False, default=0),
    Column("doc", Text, nullable=False),
    # The agent-facing spec (resolved task definition with overrides applied); never shown to users.
    Column("spec", Text, nullable=False),
)
# ListTasks pages straight off this index (arn included, so no table lookups).
Index("ix_tasks_cluster_status", tasks.c.cluster_arn, tasks.c.desired_status, tasks.c.created_at,
      tasks.c.arn)
# The live-task counts of DescribeClusters without reading stopped tasks.
Index("ix_tasks_cluster_live", tasks.c.cluster_arn, tasks.c.stopped_at, tasks.c.last_status)
Index("ix_tasks_agent", tasks.c.agent_id, tasks.c.last_status)
# DescribeTasks (ARN IN (...) AND cluster_arn = ?): without it SQLite's planner, which has no
# statistics, prefers the cluster_arn prefix of the indexes above and reads every task of the
# cluster to find 100 of them.
Index("ix_tasks_cluster_arn", tasks.c.cluster_arn, tasks.c.arn)
# A service's unfinished tasks (the service scheduler's every look, DescribeServices' counts)
# without reading the rest of the cluster's tasks.
Index("ix_tasks_service", tasks.c.cluster_arn, tasks.c.service_name, tasks.c.last_status)
Index("ix_tasks_stopped_at", tasks.c.stopped_at)

tags = Table(
    "tags",
    metadata,
    Column("resource_arn", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("value", String, nullable=False),
)

client_tokens = Table(
    "client_tokens",
    metadata,
    Column("token", String, primary_key=True),
    Column("request_hash", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("response", Text, nullable=False),
)

container_instances = Table(
    "container_instances",
    metadata,
    Column("arn", String, primary_key=True),
    Column("cluster_arn", String, nullable=False),
    Column("ec2_instance_id", String, nullable=False),
    Column("status", String, nullable=False),
    Column("agent_connected", Integer, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("doc", Text, nullable=False),
)
Index("ix_instances_cluster", container_instances.c.cluster_arn, container_instances.c.status)

services = Table(
    "services",
    metadata,
    Column("arn", String, primary_key=True),
    Column("cluster_arn", String, nullable=False),
    Column("name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("doc", Text, nullable=False),
)
Index("ix_services_cluster", services.c.cluster_arn, services.c.status)
