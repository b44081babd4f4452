"""A real `galley up` in a subprocess, for integration tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ACCESS_KEY = "AKIDGALLEYTEST000001"
SECRET_KEY = "galley-test-secret-key-0000000000000000"
REGION = "us-east-1"
SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GalleyProcess:
    """Starts, restarts and stops one Galley on a data directory; hands out signed clients."""

    def __init__(self, data_dir: Path, port: int | None = None, **env: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GALLEY_ACCESS_KEY_ID": ACCESS_KEY,
            "GALLEY_SECRET_ACCESS_KEY": SECRET_KEY,
            "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "galley.log"

    def galley(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "galley.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=120, **kw)

    def start(self) -> GalleyProcess:
        return self.launch([sys.executable, "-m", "galley.cli", "--log-level", "INFO", "up"])

    def launch(self, command: list[str]) -> GalleyProcess:
        """Run `command` (a galley CLI invocation, up to its subcommand) on this port and data
        directory; return once /health answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"galley exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("galley did not become healthy in 30 s")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        self.galley("cleanup", "--data-dir", str(self.data_dir))

    def client(self, service: str = "ecs", **config: Any) -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1}, **config))

    def agent(self, cluster: str, data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
        """A `galley agent` process registering this engine into `cluster`; waits until it is."""
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.cli_env(), "PYTHONPATH": self.env["PYTHONPATH"]}
        log = open(data_dir / "agent.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "galley.cli", "--log-level", "INFO", "agent",
             "--cluster", cluster, "--endpoint", self.endpoint, "--data-dir", str(data_dir),
             *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (data_dir / "instance.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((data_dir / "agent.log").read_text()[-3000:])
            time.sleep(0.05)
        return proc

    def cli_env(self) -> dict[str, str]:
        """Environment for the AWS CLI, exactly as `galley up` tells users to export."""
        return {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL_ECS": self.endpoint}
