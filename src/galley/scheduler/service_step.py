"""One reconcile step of an ECS service, as a pure function.

    observe  -> which tasks are live, healthy, unhealthy, per deployment
    replace  -> stop tasks whose health checks failed (past the grace period)
    start    -> new PRIMARY tasks up to desiredCount, never above maximumPercent
    stop     -> old-deployment tasks and tasks on DRAINING instances, never below
                minimumHealthyPercent healthy (ones not yet RUNNING go at once)
    scale in -> PRIMARY tasks above desiredCount
    finish   -> drop drained deployments; COMPLETED and "steady state" when done

The circuit breaker and the launch backoff are fed by `task_stopped`, called once per task
that stops. The controller applies the resulting `Plan` to the store; nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PENDING_STATES = ("PROVISIONING", "PENDING", "ACTIVATING")
BACKOFF_EVENT_AFTER = 3  # consecutive launch failures before "unable to consistently start"
DRAINING_REASON = "Container instance is being drained."


@dataclass(frozen=True)
class Settings:
    """Knobs the server exposes so local loops can be fast."""

    settle_seconds: float = 40.0  # RUNNING this long without health checks counts as healthy
    breaker_minimum: int = 3  # circuit breaker threshold floor (ECS API text: 3)
    backoff_base_seconds: float = 10.0  # first delay after a failed launch; doubles
    backoff_max_seconds: float = 900.0  # ECS caps the launch delay at 15 minutes


@dataclass(frozen=True)
class TaskView:
    """What the step needs to know about one non-STOPPED task of the service."""

    arn: str
    deployment_id: str
    last_status: str
    desired_status: str
    health_status: str  # HEALTHY | UNHEALTHY | UNKNOWN (ECS task healthStatus)
    has_health_check: bool  # an essential container defines a healthCheck
    created_at: float
    started_at: float | None = None
    draining: bool = False  # its container instance is DRAINING (or left a daemon's set)
    scale_in_rank: int = 0  # placement-strategy order among RUNNING tasks: lower stops first

    @property
    def live(self) -> bool:
        """Counts toward the desired count: the scheduler has not told it to stop."""
        return self.desired_status == "RUNNING"


@dataclass
class Plan:
    start: dict[str, int] = field(default_factory=dict)  # deployment id -> tasks to launch
    stop: list[tuple[str, str]] = field(default_factory=list)  # (task ARN, stoppedReason)
    events: list[str] = field(default_factory=list)
    changed: bool = False  # the service document itself changed
    wake_at: float | None = None  # when time alone will change the decision (settle, backoff)


def max_tasks(desired: int, maximum_percent: int) -> int:
    return math.floor(desired * maximum_percent / 100)


def min_healthy(desired: int, minimum_percent: int) -> int:
    return math.ceil(desired * minimum_percent / 100)


def breaker_threshold(desired: int, minimum: int) -> int:
    return min(max(math.ceil(0.5 * desired), minimum), 200)


def is_healthy(task: TaskView, now: float, settings: Settings) -> bool:
    if task.last_status != "RUNNING" or task.started_at is None:
        return False
    if task.has_health_check:
        return task.health_status == "HEALTHY"
    return now - task.started_at >= settings.settle_seconds


def _short_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def step(service: dict[str, Any], tasks: list[TaskView], now: float, settings: Settings) -> Plan:
    """Decide this tick's launches, stops and events; updates `service` deployments in place."""
    plan = Plan()
    name = service["serviceName"]
    deployments = service["deployments"]
    primary = deployments[0]
    config = service.get("deploymentConfiguration", {})
    desired = service["desiredCount"] if service["status"] == "ACTIVE" else 0
    if primary["desiredCount"] != desired:
        primary["desiredCount"] = desired
        plan.changed = True
    ceiling = max_tasks(desired, config.get("maximumPercent", 200))
    floor = min_healthy(desired, config.get("minimumHealthyPercent", 100))
    grace = service.get("healthCheckGracePeriodSeconds", 0) or 0

    live = [t for t in tasks if t.live]
    healthy = {t.arn for t in live if is_healthy(t, now, settings)}
    wakes = [t.started_at + settings.settle_seconds for t in live
             if t.started_at is not None and not t.has_health_check and t.arn not in healthy]
    wakes += [t.started_at + grace for t in live if t.health_status == "UNHEALTHY"
              and t.started_at is not None and now < t.started_at + grace]
    if service.get("_nextLaunchAt", 0) > now:
        wakes.append(service["_nextLaunchAt"])
    plan.wake_at = min(wakes, default=None)

    # Replace tasks that failed their health checks (ignored during the grace period).
    for t in live:
        if t.health_status == "UNHEALTHY" and t.started_at is not None \
                and now - t.started_at >= grace:
            plan.stop.append((t.arn, "Task failed container health checks"))
            plan.events.append(f"(service {name}) (task {_short_id(t.arn)}) failed container "
                               "health checks.")
    stopping = {arn for arn, _ in plan.stop}
    live = [t for t in live if t.arn not in stopping]
    healthy -= stopping

    by_deployment: dict[str, list[TaskView]] = {}
    for t in live:
        by_deployment.setdefault(t.deployment_id, []).append(t)
    # A task on a DRAINING instance is replaced like an old-deployment task: it stops counting
    # toward desiredCount at once, and stops itself once its replacement leaves room.
    primary_tasks = [t for t in by_deployment.get(primary["id"], []) if not t.draining]
    old_tasks = [t for t in live if t.deployment_id != primary["id"] or t.draining]

    # Start: fill the PRIMARY up to desiredCount within maximumPercent (all unfinished tasks,
    # including those still stopping, count toward the ceiling).
    unfinished = len(tasks)
    launchable = primary.get("rolloutState") != "FAILED" and now >= service.get(
        "_nextLaunchAt", 0)
    want = desired - len(primary_tasks)
    room = ceiling - unfinished
    if want > 0 and launchable and room > 0:
        plan.start[primary["id"]] = min(want, room)

    # Stop old-deployment tasks: those that never got RUNNING freely; RUNNING ones only while
    # the healthy count stays at or above the floor (a RUNNING task still settling waits).
    spare = len(healthy) - floor
    reason = f"Scaling activity initiated by (deployment {primary['id']})"
    for t in sorted(old_tasks, key=lambda t: (t.last_status == "RUNNING", not t.draining,
                                              t.created_at)):
        if t.last_status == "RUNNING" and desired > 0:
            if t.arn not in healthy or spare <= 0:
                continue
            spare -= 1
        plan.stop.append((t.arn, DRAINING_REASON if t.draining else reason))

    # Scale in: PRIMARY above desiredCount; stop pending ones first, then by the placement
    # strategies' order (on instances), then the newest.
    extra = len(primary_tasks) - desired
    if extra > 0:
        order = sorted(primary_tasks, key=lambda t: (t.arn in healthy, t.last_status == "RUNNING",
                                                     t.scale_in_rank, -t.created_at))
        for t in order[:extra]:
            plan.stop.append((t.arn, f"Scaling activity initiated by (deployment {primary['id']})"))

    # Only the bounds themselves can deadlock a rollout: no room above desiredCount to start a
    # new task and no room below it to stop an old one (e.g. desired 1, max 100, min 100).
    if old_tasks and want > 0 and ceiling <= desired and floor >= desired:
        plan.events.append(
            f"service {name} was unable to stop or start tasks during a deployment because of "
            "the service deployment configuration. Update the minimumHealthyPercent or "
            "maximumPercent value and try again.")

    _finish(service, plan, tasks, by_deployment, healthy, desired, now)
    return plan


def _finish(service: dict[str, Any], plan: Plan, tasks: list[TaskView],
            by_deployment: dict[str, list[TaskView]], healthy: set[str], desired: int,
            now: float) -> None:
    """Drop drained deployments; mark the rollout COMPLETED once the PRIMARY is whole."""
    name = service["serviceName"]
    deployments = service["deployments"]
    primary = deployments[0]
    stopping = {arn for arn, _ in plan.stop}
    if service["status"] == "DRAINING" and not tasks:
        service["status"] = "INACTIVE"
        plan.changed = True
    primary_healthy = [t for t in by_deployment.get(primary["id"], [])
                       if t.arn in healthy and t.arn not in stopping and not t.draining]
    old_unfinished = any(t.deployment_id != primary["id"] or t.draining for t in tasks)
    done = len(primary_healthy) == desired and not plan.start and not old_unfinished
    # Superseded deployments (a FAILED one too) stay listed until the PRIMARY is whole and
    # their last task has STOPPED; then they go, which is what ServicesStable waits for.
    if done and len(deployments) > 1:
        service["deployments"] = [primary]
        plan.changed = True
    if done and primary.get("rolloutState") == "IN_PROGRESS" and service["status"] == "ACTIVE":
        primary["rolloutState"] = "COMPLETED"
        primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
        primary["updatedAt"] = now
        service["_lastCompleted"] = {"id": primary["id"],
                                     "taskDefinition": primary["taskDefinition"]}
        plan.events.append(f"(service {name}) (deployment {primary['id']}) deployment completed.")
        plan.changed = True
    if done and service["status"] == "ACTIVE":
        plan.events.append(f"(service {name}) has reached a steady state.")
    if primary_healthy and primary.get("failedTasks"):
        # A task that runs and stays healthy ends the breaker's count (ECS resets failedTasks).
        primary["failedTasks"] = 0
        plan.changed = True
    if primary_healthy and service.get("_launchFailures"):
        service["_launchFailures"] = 0
        service["_nextLaunchAt"] = 0
        plan.changed = True


def task_stopped(service: dict[str, Any], deployment_id: str, became_healthy: bool,
                 health_failure: bool, now: float, settings: Settings,
                 new_deployment_id: str) -> list[str]:
    """Account for one stopped task of the service: circuit breaker and launch backoff.

    A task counts as failed when it stopped before it ever became healthy (it could not start,
    or crashed on start) or when it was replaced for failing health checks. This is stricter than
    ECS's two stages, which miss tasks that crash right after RUNNING (containers-roadmap#1206).
    Returns the events to record. `new_deployment_id` names a rollback deployment if one starts.
    """
    name = service["serviceName"]
    events: list[str] = []
    failed = health_failure or not became_healthy
    if not failed:
        return events
    if not became_healthy:
        n = service.get("_launchFailures", 0) + 1
        service["_launchFailures"] = n
        delay = min(settings.backoff_base_seconds * 2 ** (n - 1), settings.backoff_max_seconds)
        service["_nextLaunchAt"] = now + delay
        if n == BACKOFF_EVENT_AFTER:
            events.append(f"(service {name}) is unable to consistently start tasks successfully. "
                          "For more information, see the Troubleshooting section of the Amazon "
                          "ECS Developer Guide.")
    deployment = next((d for d in service["deployments"] if d["id"] == deployment_id), None)
    if deployment is None or deployment is not service["deployments"][0]:
        return events
    deployment["failedTasks"] = deployment.get("failedTasks", 0) + 1
    breaker = service.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker", {})
    threshold = breaker_threshold(service["desiredCount"], settings.breaker_minimum)
    if not breaker.get("enable") or deployment.get("rolloutState") != "IN_PROGRESS" \
            or deployment["failedTasks"] < threshold:
        return events
    deployment["rolloutState"] = "FAILED"
    deployment["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
    deployment["updatedAt"] = now
    events.append(f"(service {name}) (deployment {deployment['id']}) deployment failed: tasks "
                  "failed to start.")
    last_good = service.get("_lastCompleted")
    # A deployment of the last good task definition (a rollback) is not rolled back again.
    if breaker.get("rollback") and last_good and \
            last_good["taskDefinition"] != deployment["taskDefinition"]:
        rollback = new_deployment(new_deployment_id, last_good["taskDefinition"], service, now)
        rollback["rolloutStateReason"] = (
            f"ECS deployment circuit breaker: rolling back to deploymentId {last_good['id']}.")
        deployment["status"] = "ACTIVE"
        service["deployments"].insert(0, rollback)
        service["taskDefinition"] = last_good["taskDefinition"]
        service["_launchFailures"] = 0
        service["_nextLaunchAt"] = 0
        events.append(f"(service {name}) rolling back to deployment {last_good['id']}.")
    return events


def new_deployment(deployment_id: str, task_definition: str, service: dict[str, Any],
                   now: float) -> dict[str, Any]:
    """A PRIMARY deployment of `task_definition` for the service's current settings."""
    d: dict[str, Any] = {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": task_definition,
        "desiredCount": service["desiredCount"],
        "pendingCount": 0,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
    }
    for key in ("launchType", "capacityProviderStrategy", "platformVersion", "platformFamily",
                "networkConfiguration"):
        if key in service:
            d[key] = service[key]
    return d


def add_events(service: dict[str, Any], messages: list[str], now: float, new_id: Any,
               dedupe_seconds: float = 6 * 3600, cap: int = 100) -> bool:
    """Prepend events newest first, capped; a message repeating the newest event within
    `dedupe_seconds` is skipped (so "steady state" is said again after each new rollout or
    replacement, but not on every tick in between)."""
    events = service.setdefault("events", [])
    added = False
    for message in messages:
        if events and events[0]["message"] == message and \
                now - events[0]["createdAt"] < dedupe_seconds:
            continue
        events.insert(0, {"id": str(new_id()), "createdAt": now, "message": message})
        added = True
    del events[cap:]
    return added
