"""Store generations and what is cached under them (DescribeClusters answers, the cluster rows
of get_active): every commit, by this process or any other connection to the SQLite file, makes
what was cached stale, and nothing is cached from inside a write that changed something."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from galley.api.ecs import ecs_service  # noqa: F401 - registers every module's cluster counters
from galley.app import Galley
from galley.arns import Scope
from galley.config import Settings
from galley.control import clusters, tags
from galley.control.clusters import AnswerCache
from galley.errors import ApiError
from galley.jsondoc import encode_body
from galley.store import schema as s
from galley.store.db import Store, generation_of

SCOPE = Scope("us-east-1", "000000000000")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    st = Store(f"sqlite:///{tmp_path / 'galley.db'}")
    yield st
    st.close()


def test_generation_changes_after_every_commit_only(store: Store) -> None:
    g0 = store.generation()
    assert g0 is not None
    with store.read() as conn:
        conn.execute(s.clusters.select()).all()
    assert store.generation() == g0  # reads change nothing
    with store.write() as conn:
        conn.execute(s.families.insert().values(region="r", family="f", last_revision=1))
    g1 = store.generation()
    assert g1 != g0
    assert store.generation() == g1


def test_generation_changes_after_a_rolled_back_write(store: Store) -> None:
    g0 = store.generation()
    with pytest.raises(RuntimeError), store.write() as conn:
        conn.execute(s.families.insert().values(region="r", family="f", last_revision=1))
        raise RuntimeError("abort")
    assert store.generation() != g0  # harmless: nothing cached survives a write attempt


def test_generation_sees_commits_by_other_connections(store: Store, tmp_path: Path) -> None:
    g0 = store.generation()
    other = sqlite3.connect(tmp_path / "galley.db")
    other.execute("INSERT INTO families VALUES ('r', 'f', 1)")
    other.commit()
    g1 = store.generation()
    assert g1 != g0
    other.execute("SELECT * FROM families").fetchall()
    assert store.generation() == g1
    other.close()


def test_generation_is_none_once_closed(tmp_path: Path) -> None:
    st = Store(f"sqlite:///{tmp_path / 'x.db'}")
    st.close()
    assert st.generation() is None


def test_answer_cache() -> None:
    cache = AnswerCache(limit=2)
    assert cache.get((0, 1), "a") is None
    cache.put((0, 1), "a", "A")
    assert cache.get((0, 1), "a") == "A"
    assert cache.get((0, 2), "a") is None  # another generation: stale
    cache.put((0, 1), "b", "B")
    cache.put((0, 1), "c", "C")  # over the limit: not kept
    assert cache.get((0, 1), "c") is None and cache.get((0, 1), "b") == "B"
    cache.put((1, 1), "c", "C2")  # a new generation drops the old entries
    assert cache.get((1, 1), "c") == "C2" and cache.get((1, 1), "a") is None
    assert cache.get((0, 1), "a") is None
    cache.put(None, "n", "N")  # unknown generation: never cached
    assert cache.get(None, "n") is None


# ---- DescribeClusters reflects every write ----------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Any:
    galley = Galley(Settings(data_dir=tmp_path))
    yield galley
    galley.store.close()


def describe(app: Galley, *refs: str, include: list[str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"clusters": list(refs)}
    if include:
        params["include"] = include
    return orjson.loads(encode_body(clusters.describe_clusters(app, SCOPE, params)))


def add_task(app: Galley, cluster: str, arn: str, last_status: str) -> None:
    with app.store.write() as conn:
        conn.execute(s.tasks.insert().values(
            arn=arn, cluster_arn=SCOPE.cluster_arn(cluster), family="f", desired_status="RUNNING",
            last_status=last_status, created_at=1.0, version=1, doc="{}", spec="{}"))


def test_counts_follow_writes(app: Galley) -> None:
    clusters.create_cluster(app, SCOPE, {"clusterName": "c"})
    first = describe(app, "c")["clusters"][0]
    assert (first["runningTasksCount"], first["pendingTasksCount"]) == (0, 0)
    assert describe(app, "c")["clusters"][0] == first  # served again, same answer
    add_task(app, "c", "arn:t1", "RUNNING")
    add_task(app, "c", "arn:t2", "PROVISIONING")
    now = describe(app, "c")["clusters"][0]
    assert (now["runningTasksCount"], now["pendingTasksCount"]) == (1, 1)
    with app.store.write() as conn:
        conn.execute(s.tasks.update().where(s.tasks.c.arn == "arn:t2").values(
            last_status="STOPPED", stopped_at=2.0))
    now = describe(app, "c")["clusters"][0]
    assert (now["runningTasksCount"], now["pendingTasksCount"]) == (1, 0)


def test_commits_by_another_process_are_seen(app: Galley, tmp_path: Path) -> None:
    clusters.create_cluster(app, SCOPE, {"clusterName": "c"})
    add_task(app, "c", "arn:t1", "RUNNING")
    assert describe(app, "c")["clusters"][0]["runningTasksCount"] == 1
    other = sqlite3.connect(tmp_path / "galley.db")
    other.execute("UPDATE tasks SET last_status = 'PENDING'")
    other.commit()
    other.close()
    now = describe(app, "c")["clusters"][0]
    assert (now["runningTasksCount"], now["pendingTasksCount"]) == (0, 1)


def test_cluster_changes_and_missing_clusters(app: Galley) -> None:
    out = describe(app, "later", "later")
    assert out["clusters"] == []
    assert out["failures"] == [{"arn": SCOPE.cluster_arn("later"), "reason": "MISSING"}]
    clusters.create_cluster(app, SCOPE, {"clusterName": "later"})
    out = describe(app, "later", SCOPE.cluster_arn("later"))
    assert [c["clusterName"] for c in out["clusters"]] == ["later"] and out["failures"] == []
    clusters.update_cluster_settings(app, SCOPE, {
        "cluster": "later", "settings": [{"name": "containerInsights", "value": "enabled"}]})
    assert describe(app, "later")["clusters"][0]["settings"] == [
        {"name": "containerInsights", "value": "enabled"}]
    clusters.delete_cluster(app, SCOPE, {"cluster": "later"})
    assert describe(app, "later")["clusters"][0]["status"] == "INACTIVE"


def test_tags_are_included_only_when_asked_and_follow_writes(app: Galley) -> None:
    arn = clusters.create_cluster(app, SCOPE, {"clusterName": "t", "tags": [
        {"key": "a", "value": "1"}]})["cluster"]["clusterArn"]
    assert describe(app, "t")["clusters"][0]["tags"] == []
    assert describe(app, "t", include=["TAGS"])["clusters"][0]["tags"] == [
        {"key": "a", "value": "1"}]
    tags.tag_resource(app, SCOPE, {"resourceArn": arn, "tags": [{"key": "b", "value": "2"}]})
    assert describe(app, "t", include=["TAGS"])["clusters"][0]["tags"] == [
        {"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    assert describe(app, "t")["clusters"][0]["tags"] == []


def test_answers_are_the_same_without_a_generation(app: Galley, monkeypatch: Any) -> None:
    clusters.create_cluster(app, SCOPE, {"clusterName": "c"})
    add_task(app, "c", "arn:t1", "RUNNING")
    cached = describe(app, "c", "nope")
    monkeypatch.setattr(app.store, "generation", lambda: None)
    assert describe(app, "c", "nope") == cached


# ---- the cluster rows most calls start with ---------------------------------------------------


def test_generation_of_a_connection(store: Store) -> None:
    with store.read() as conn:
        assert generation_of(conn) == store.generation()
        conn.execute(s.clusters.select()).all()
        assert generation_of(conn) is not None  # reads open no transaction
    with store.write() as conn:
        assert generation_of(conn) is not None  # nothing changed yet: it sees what is committed
        conn.execute(s.families.insert().values(region="r", family="f", last_revision=1))
        assert generation_of(conn) is None  # it sees its own uncommitted change: never cache


def test_get_active_follows_writes(app: Galley) -> None:
    clusters.create_cluster(app, SCOPE, {"clusterName": "g"})
    with app.store.read() as conn:
        assert clusters.get_active(conn, SCOPE, "g")["clusterName"] == "g"
        doc = clusters.get_active(conn, SCOPE, "g")
        doc["status"] = "MUTATED"  # callers get their own copy
        assert clusters.get_active(conn, SCOPE, "g")["status"] == "ACTIVE"
        with pytest.raises(ApiError):
            clusters.get_active(conn, SCOPE, "absent")
    clusters.create_cluster(app, SCOPE, {"clusterName": "absent"})
    clusters.update_cluster_settings(app, SCOPE, {
        "cluster": "g", "settings": [{"name": "containerInsights", "value": "enabled"}]})
    with app.store.read() as conn:
        assert clusters.get_active(conn, SCOPE, "absent")["clusterName"] == "absent"
        assert clusters.get_active(conn, SCOPE, "g")["settings"][0]["value"] == "enabled"
    clusters.delete_cluster(app, SCOPE, {"cluster": "g"})
    with app.store.read() as conn, pytest.raises(ApiError):
        clusters.get_active(conn, SCOPE, "g")


def test_get_active_inside_a_write_sees_its_changes_and_never_keeps_them(app: Galley) -> None:
    clusters.create_cluster(app, SCOPE, {"clusterName": "w"})
    with app.store.read() as conn:
        clusters.get_active(conn, SCOPE, "w")  # kept
    arn = SCOPE.cluster_arn("w")
    with pytest.raises(RuntimeError), app.store.write() as conn:
        conn.execute(s.clusters.update().where(s.clusters.c.arn == arn).values(status="INACTIVE"))
        with pytest.raises(ApiError):
            clusters.get_active(conn, SCOPE, "w")  # its own uncommitted change
        raise RuntimeError("roll back")
    with app.store.read() as conn:
        assert clusters.get_active(conn, SCOPE, "w")["status"] == "ACTIVE"


def test_get_active_sees_commits_by_another_process(app: Galley, tmp_path: Path) -> None:
    clusters.create_cluster(app, SCOPE, {"clusterName": "o"})
    with app.store.read() as conn:
        clusters.get_active(conn, SCOPE, "o")
    other = sqlite3.connect(tmp_path / "galley.db")
    other.execute("UPDATE clusters SET status = 'INACTIVE'")
    other.commit()
    other.close()
    with app.store.read() as conn, pytest.raises(ApiError):
        clusters.get_active(conn, SCOPE, "o")
