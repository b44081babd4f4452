"""`galley up` (control plane + built-in FARGATE agent) and `galley cleanup`."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import docker
import docker.errors

from galley import __version__
from galley.config import (
    Settings,
    account_id_from_env,
    default_data_dir,
    load_credentials,
    service_settings_from_env,
)

DEFAULT_PORT = 7070


def installation_id(data_dir: Path) -> str:
    """A short id kept in the data directory; it scopes the Docker labels of this installation."""
    path = data_dir / "installation-id"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(4))
    return path.read_text().strip()


def docker_client_or_exit() -> docker.DockerClient:
    try:
        client = docker.from_env(max_pool_size=32)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError) as e:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        sys.exit(
            f"galley: no Docker engine answers at {where} ({e}).\n"
            "Start one (as root, `scripts/setup` installs Debian's docker.io and starts dockerd),"
            " or point DOCKER_HOST at a running engine."
        )


def _settings(args: argparse.Namespace) -> Settings:
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(
        data_dir=data_dir,
        host=getattr(args, "host", "127.0.0.1"),
        port=getattr(args, "port", DEFAULT_PORT),
        account_id=account_id_from_env(),
        credentials=load_credentials(data_dir),
        stopped_task_retention=float(os.environ.get("GALLEY_STOPPED_TASK_RETENTION", 3600)),
        service=service_settings_from_env(),
        agent_timeout_seconds=float(os.environ.get("GALLEY_AGENT_TIMEOUT_SECONDS", 60)),
    )


def _serve(args: argparse.Namespace, with_fargate: bool) -> int:
    from galley.agent.agent import Agent
    from galley.agent.control_plane import LocalControlPlane
    from galley.api.agent_service import agent_service
    from galley.api.ecs import ecs_service
    from galley.api.server import GalleyHTTPServer, Router
    from galley.app import FARGATE_AGENT_ID, Galley
    from galley.control import tasks
    from galley.controllers import janitor, services

    settings = _settings(args)
    client = docker_client_or_exit() if with_fargate else None
    app = Galley(settings)
    tasks.REPORT_HOOKS.append(services.on_task_report(app))
    creds = settings.credentials
    assert creds is not None
    router = Router(settings.account_id,
                    lambda key: creds.secret_access_key if key == creds.access_key_id else None)
    router.add(ecs_service(app))
    router.add(agent_service(app))
    server = GalleyHTTPServer((settings.host, settings.port), router)
    stop = threading.Event()
    threads = [
        threading.Thread(target=server.serve_forever, name="http", daemon=True),
        threading.Thread(target=janitor.run, args=(app, stop), name="janitor", daemon=True),
        threading.Thread(target=services.run, args=(app, stop), name="services", daemon=True),
    ]
    if client is not None:
        agent = Agent(LocalControlPlane(app, FARGATE_AGENT_ID),
                      f"{installation_id(settings.data_dir)}-{FARGATE_AGENT_ID}",
                      docker_client=client, resync_seconds=settings.resync_seconds,
                      sandbox_pool_size=int(os.environ.get("GALLEY_SANDBOX_POOL", 2)))
        threads.append(threading.Thread(target=agent.run, args=(stop,), name="agent",
                                        daemon=True))
    for t in threads:
        t.start()
    host, port = server.server_address[:2]
    endpoint = f"http://{host}:{port}"
    print(f"Galley {__version__} is up: ECS API at {endpoint}, data in {settings.data_dir}")
    print("Use it with the AWS CLI or boto3 by pasting:")
    print(f"  export AWS_ACCESS_KEY_ID={creds.access_key_id}")
    print(f"  export AWS_SECRET_ACCESS_KEY={creds.secret_access_key}")
    print("  export AWS_DEFAULT_REGION=us-east-1")
    print(f"  export AWS_ENDPOINT_URL_ECS={endpoint}")
    sys.stdout.flush()
    _wait_for_signal(stop)
    server.shutdown()
    app.store.close()
    print("Galley stopped; task containers keep running and are re-adopted at the next start.")
    sys.stdout.flush()
    # Task threads may be inside a Docker call (a start, a stop timeout): the containers are
    # meant to outlive us and the store is closed, so nothing is worth waiting for.
    os._exit(0)


def _wait_for_signal(stop: threading.Event) -> None:
    def shutdown(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    stop.wait()


def cmd_up(args: argparse.Namespace) -> int:
    return _serve(args, with_fargate=True)


def cmd_server(args: argparse.Namespace) -> int:
    return _serve(args, with_fargate=False)


def cmd_agent(args: argparse.Namespace) -> int:
    """Register this host's Docker engine as a container instance and run its tasks."""
    import json

    from galley.agent.agent import Agent
    from galley.agent.remote import RemoteControlPlane

    data_dir = Path(args.data_dir).expanduser() if args.data_dir else \
        Path.home() / ".galley-agent"
    data_dir.mkdir(parents=True, exist_ok=True)
    client = docker_client_or_exit()
    info = client.info()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    control = RemoteControlPlane(args.endpoint, region)
    identity_path = data_dir / "instance.json"
    identity = json.loads(identity_path.read_text()) if identity_path.exists() else {}
    attributes = [{"name": "ecs.cpu-architecture",
                   "value": "arm64" if info.get("Architecture") in ("aarch64", "arm64")
                   else "x86_64"}]
    for item in args.attribute:
        name, sep, value = item.partition("=")
        if not sep or not name:
            sys.exit(f"galley agent: --attribute takes NAME=VALUE, got {item!r}")
        attributes.append({"name": name, "value": value})
    cpu = args.cpu or int(info.get("NCPU", 1)) * 1024
    memory = args.memory or int(info.get("MemTotal", 0)) // (1024 * 1024)
    register = {
        "cluster": args.cluster,
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        ],
        "versionInfo": {"agentVersion": __version__, "dockerVersion":
                        f"DockerVersion: {info.get('ServerVersion', '')}"},
        "attributes": attributes,
    }
    if identity.get("containerInstanceArn"):
        register["containerInstanceArn"] = identity["containerInstanceArn"]
        register["instanceIdentityDocument"] = json.dumps(
            {"instanceId": identity["ec2InstanceId"]})
    instance = control.ecs().register_container_instance(**register)["containerInstance"]
    identity = {"containerInstanceArn": instance["containerInstanceArn"],
                "ec2InstanceId": instance["ec2InstanceId"]}
    identity_path.write_text(json.dumps(identity))
    control.instance_arn = instance["containerInstanceArn"]
    print(f"Registered {instance['containerInstanceArn']} ({cpu} CPU units, {memory} MiB)")
    sys.stdout.flush()
    stop = threading.Event()
    agent = Agent(control, instance["containerInstanceArn"].rsplit("/", 1)[1],
                  docker_client=client, resync_seconds=args.poll_seconds)
    threading.Thread(target=agent.run, args=(stop,), name="agent", daemon=True).start()
    _wait_for_signal(stop)
    print("Agent stopped; task containers keep running and are re-adopted at the next start.")
    sys.stdout.flush()
    os._exit(0)  # as for `galley up`: never wait for a Docker call in flight


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Stop every task and remove every container and volume this installation made."""
    from galley.agent import docker_config as dc
    from galley.app import Galley
    from galley.control import tasks

    settings = _settings(args)
    client = docker_client_or_exit()
    app = Galley(settings)
    stopped = tasks.stop_all_for_cleanup(app)
    prefix = f"{installation_id(settings.data_dir)}-"

    def ours(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(dc.LABEL_AGENT, "").startswith(prefix)

    removed = 0
    for summary in client.api.containers(all=True, filters={"label": dc.LABEL_AGENT}):
        if ours(summary.get("Labels")):
            client.api.remove_container(summary["Id"], force=True)
            removed += 1
    for volume in client.api.volumes(filters={"label": dc.LABEL_AGENT}).get("Volumes") or []:
        if ours(volume.get("Labels")):
            client.api.remove_volume(volume["Name"], force=True)
    print(f"Stopped {stopped} tasks and removed {removed} containers.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="galley", description=__doc__)
    parser.add_argument("--version", action="version", version=f"galley {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("GALLEY_LOG_LEVEL", "WARNING"))
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the control plane and built-in FARGATE capacity")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=DEFAULT_PORT)
    up.add_argument("--data-dir", default=None)
    up.set_defaults(func=cmd_up)
    server = sub.add_parser("server", help="run the control plane only (no built-in capacity)")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    server.add_argument("--data-dir", default=None)
    server.set_defaults(func=cmd_server)
    agent = sub.add_parser("agent", help="register this host's Docker engine into a cluster")
    agent.add_argument("--cluster", default="default")
    agent.add_argument("--endpoint", required=True, help="the Galley server URL")
    agent.add_argument("--data-dir", default=None)
    agent.add_argument("--cpu", type=int, default=None, help="CPU units to offer (1024 a core)")
    agent.add_argument("--memory", type=int, default=None, help="MiB of memory to offer")
    agent.add_argument("--attribute", action="append", default=[], metavar="NAME=VALUE")
    agent.add_argument("--poll-seconds", type=float, default=20.0, help=argparse.SUPPRESS)
    agent.set_defaults(func=cmd_agent)
    cleanup = sub.add_parser("cleanup", help="stop every task and remove every container")
    cleanup.add_argument("--data-dir", default=None)
    cleanup.set_defaults(func=cmd_cleanup)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
