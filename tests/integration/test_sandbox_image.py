"""The awsvpc sandbox image: the hand-assembled pause binary and the image built from it."""

from __future__ import annotations

import io
import platform
import shutil
import signal
import struct
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

docker = pytest.importorskip("docker")

from galley.agent.sandbox_image import (  # noqa: E402
    SANDBOX_IMAGE,
    SANDBOX_LABEL,
    SANDBOX_VERSION,
    ensure_sandbox_image,
    normalize_machine,
    pause_binary,
    sandbox_tar,
)


def _engine() -> Any:
    """A client for the local engine, or None when no engine answers."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:
        return None
    return client


_CLIENT = _engine()
if _CLIENT is None:
    pytest.skip("no Docker engine answers", allow_module_level=True)

pytestmark = pytest.mark.docker

BUSYBOX = "galley-test/busybox:latest"
_EM = {"x86_64": 62, "aarch64": 183}
_READELF_MACHINE = {"x86_64": "X86-64", "aarch64": "AArch64"}


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Any:
    """The module's Docker client."""
    return _CLIENT


@pytest.fixture
def track(client: Any) -> Iterator[Callable[[Any], Any]]:
    """Register containers to force-remove when the test ends (in reverse creation order)."""
    created: list[Any] = []

    def add(container: Any) -> Any:
        created.append(container)
        return container

    yield add
    for container in reversed(created):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def network(client: Any) -> Iterator[Any]:
    """A throwaway user-defined bridge network, like the ones awsvpc sandboxes sit on."""
    net = client.networks.create(f"galley-test-sbx-{uuid.uuid4().hex[:10]}", driver="bridge")
    yield net
    net.reload()
    for container in net.containers:  # only this module's containers can be attached
        container.remove(force=True)
    net.remove()


def _name(role: str) -> str:
    return f"galley-test-sbx-{role}-{uuid.uuid4().hex[:10]}"


def _start_sandbox(client: Any, track: Callable[[Any], Any], network: Any) -> Any:
    """Run a sandbox container on `network` and return it, reloaded."""
    image = ensure_sandbox_image(client)
    container = track(
        client.containers.run(image, name=_name("sandbox"), network=network.name, detach=True)
    )
    container.reload()
    return container


def _has_image(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _remove_sandbox_image(client: Any) -> None:
    if _has_image(client, SANDBOX_IMAGE):
        client.images.remove(SANDBOX_IMAGE, force=True)


# ---- the binary -----------------------------------------------------------------------------


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_pause_binary_has_a_valid_elf_header(machine: str, tmp_path: Path) -> None:
    binary = pause_binary(machine)
    assert len(binary) < 512
    ident = binary[:16]
    assert ident[:4] == b"\x7fELF" and ident[4] == 2 and ident[5] == 1 and ident[6] == 1
    (
        e_type,
        e_machine,
        e_version,
        e_entry,
        e_phoff,
        e_shoff,
        _flags,
        e_ehsize,
        e_phentsize,
        e_phnum,
        _shentsize,
        e_shnum,
        _shstrndx,
    ) = struct.unpack_from("<HHIQQQIHHHHHH", binary, 16)
    assert (e_type, e_machine, e_version) == (2, _EM[machine], 1)
    assert (e_phoff, e_ehsize, e_phentsize, e_phnum) == (64, 64, 56, 1)
    assert (e_shoff, e_shnum) == (0, 0)
    p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_align = struct.unpack_from(
        "<IIQQQQQQ", binary, e_phoff
    )
    assert (p_type, p_flags, p_offset) == (1, 5, 0)  # PT_LOAD, R+X, the whole file
    assert p_filesz == p_memsz == len(binary)
    assert p_vaddr % p_align == 0
    assert p_vaddr + 120 <= e_entry < p_vaddr + p_filesz
    if machine == "aarch64":
        assert (e_entry - p_vaddr) % 4 == 0

    readelf = shutil.which("readelf")
    if readelf is None:
        return
    path = tmp_path / f"pause-{machine}"
    path.write_bytes(binary)
    result = subprocess.run([readelf, "-h", "-l", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower() and "error" not in result.stderr.lower()
    assert "ELF64" in result.stdout and "EXEC" in result.stdout
    assert _READELF_MACHINE[machine] in result.stdout
    assert f"Entry point address:               {e_entry:#x}" in result.stdout


def test_machine_aliases() -> None:
    assert pause_binary("amd64") == pause_binary("x86_64") == pause_binary("X86_64")
    assert pause_binary("arm64") == pause_binary("aarch64")
    assert pause_binary("x86_64") != pause_binary("aarch64")
    assert normalize_machine("arm64") == "aarch64"
    with pytest.raises(ValueError):
        pause_binary("riscv64")


def test_sandbox_tar_holds_only_an_executable_pause() -> None:
    binary = pause_binary("x86_64")
    with tarfile.open(fileobj=io.BytesIO(sandbox_tar(binary))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["pause"]
        assert members[0].isfile() and members[0].mode == 0o755 and members[0].uid == 0
        extracted = tar.extractfile(members[0])
        assert extracted is not None and extracted.read() == binary


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_pause_binary_runs_on_this_host(signum: int, tmp_path: Path) -> None:
    try:
        binary = pause_binary(platform.machine())
    except ValueError:
        pytest.skip(f"no pause binary for {platform.machine()}")
    path = tmp_path / "pause"
    path.write_bytes(binary)
    path.chmod(0o755)
    process = subprocess.Popen([str(path)])
    try:
        time.sleep(0.3)
        assert process.poll() is None, "pause exited on its own"
        started = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 1.0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---- the image ------------------------------------------------------------------------------


def test_ensure_builds_the_image_from_nothing(client: Any) -> None:
    _remove_sandbox_image(client)
    assert ensure_sandbox_image(client) == SANDBOX_IMAGE
    attrs = client.api.inspect_image(SANDBOX_IMAGE)
    config = attrs["Config"]
    assert config["Entrypoint"] == ["/pause"]
    assert config["Labels"][SANDBOX_LABEL] == str(SANDBOX_VERSION)
    assert attrs["Size"] == len(pause_binary(client.info()["Architecture"]))
    assert len(attrs["RootFS"]["Layers"]) == 1


def test_ensure_is_one_inspect_when_present(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_sandbox_image(client)
    calls: list[str] = []
    for name in ("inspect_image", "import_image_from_data", "info"):
        original = getattr(client.api, name)

        def counted(*args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> Any:
            calls.append(_name)
            return _orig(*args, **kw)

        monkeypatch.setattr(client.api, name, counted)
    assert ensure_sandbox_image(client) == SANDBOX_IMAGE
    assert calls == ["inspect_image"]


def test_ensure_is_thread_safe(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _remove_sandbox_image(client)
    imports: list[int] = []
    original = client.api.import_image_from_data

    def counted(*args: Any, **kw: Any) -> Any:
        imports.append(1)
        return original(*args, **kw)

    monkeypatch.setattr(client.api, "import_image_from_data", counted)
    results: list[str] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(ensure_sandbox_image(client))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert results == [SANDBOX_IMAGE] * 8
    assert len(imports) == 1


def test_sandbox_stays_up_and_stops_fast(client: Any, track: Any, network: Any) -> None:
    sandbox = _start_sandbox(client, track, network)
    time.sleep(1.0)
    sandbox.reload()
    assert sandbox.status == "running"
    assert sandbox.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]

    started = time.monotonic()
    sandbox.stop(timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"docker stop took {elapsed:.2f}s"
    assert sandbox.wait(timeout=10)["StatusCode"] == 0
    sandbox.reload()
    assert sandbox.attrs["State"]["ExitCode"] == 0
    assert not sandbox.attrs["State"]["OOMKilled"]


def test_sandbox_exits_zero_on_sigint(client: Any, track: Any, network: Any) -> None:
    sandbox = _start_sandbox(client, track, network)
    sandbox.kill(signal="SIGINT")
    assert sandbox.wait(timeout=10)["StatusCode"] == 0


def test_joiners_share_the_sandbox_netns(client: Any, track: Any, network: Any) -> None:
    if not _has_image(client, BUSYBOX):
        pytest.skip(f"{BUSYBOX} is not built")
    sandbox = _start_sandbox(client, track, network)
    ip = sandbox.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    netns = f"container:{sandbox.id}"

    listener = track(
        client.containers.run(
            BUSYBOX,
            ["nc", "-l", "-p", "7000"],
            name=_name("listener"),
            network_mode=netns,
            detach=True,
        )
    )
    # The second joiner sees the sandbox's address and reaches the first one on localhost.
    sent = False
    deadline = time.monotonic() + 15
    while not sent and time.monotonic() < deadline:
        talker = track(
            client.containers.run(
                BUSYBOX,
                ["sh", "-c", "ip -o -4 addr show; echo galley-netns-ok | nc localhost 7000"],
                name=_name("talker"),
                network_mode=netns,
                detach=True,
            )
        )
        sent = talker.wait(timeout=30)["StatusCode"] == 0
        if sent:
            assert f"inet {ip}/" in talker.logs().decode()
        else:
            time.sleep(0.2)  # the listener is not listening yet
    assert sent, "nothing listened on localhost:7000 in the shared namespace"
    assert listener.wait(timeout=15)["StatusCode"] == 0
    assert "galley-netns-ok" in listener.logs().decode()
    sandbox.reload()
    assert sandbox.status == "running"
