"""The SQLite store: migrations, WAL, several processes writing at once, a process killed in the
middle of a write, and the one-line error a database that cannot be used gives at start."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from ollama_shim import cli
from ollama_shim import custom_models as cm
from ollama_shim import store as store_module
from ollama_shim.store import DB_FILE, Schema, Store, StoreError
from support.clients import async_client
from support.lmstudio import LMStudioEmulation
from support.shim import shim_in_loop

SRC = Path(__file__).resolve().parents[1] / "src"
NOTES_V1 = Schema("notes", (("CREATE TABLE notes (k TEXT PRIMARY KEY, v TEXT NOT NULL)",),))
NOTES_V2 = Schema("notes", (*NOTES_V1.migrations, ("ALTER TABLE notes ADD COLUMN w TEXT",)))


def _open(path: Path, *schemas: Schema) -> Store:
    return Store(str(path), schemas).open()


def test_open_creates_the_directory_the_file_and_the_tables(tmp_path: Path) -> None:
    store = _open(tmp_path / "new" / "dir", NOTES_V1)
    store.run_blocking(lambda c: c.execute("INSERT INTO notes VALUES ('a', 'b')"))
    store.close()
    assert (tmp_path / "new" / "dir" / DB_FILE).is_file()


def test_without_a_data_directory_the_store_is_in_memory_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store("", (NOTES_V1,)).open()
    store.run_blocking(lambda c: c.execute("INSERT INTO notes VALUES ('a', 'b')"))
    assert store.run_blocking(lambda c: c.execute("SELECT count(*) FROM notes").fetchone()[0]) == 1
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    _open(tmp_path, NOTES_V1).close()
    with sqlite3.connect(tmp_path / DB_FILE) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_migration_runs_once_and_a_later_one_is_added(tmp_path: Path) -> None:
    _open(tmp_path, NOTES_V1).close()
    _open(tmp_path, NOTES_V1).close()  # a second CREATE TABLE would fail
    store = _open(tmp_path, NOTES_V2)
    store.run_blocking(lambda c: c.execute("INSERT INTO notes VALUES ('a', 'b', 'c')"))
    versions = store.run_blocking(lambda c: c.execute("SELECT component, version FROM schema_version").fetchall())
    store.close()
    assert versions == [("notes", 2)]


def test_components_keep_their_own_versions(tmp_path: Path) -> None:
    store = _open(tmp_path, NOTES_V1, cm.SCHEMA)
    versions = dict(store.run_blocking(lambda c: c.execute("SELECT component, version FROM schema_version").fetchall()))
    store.close()
    assert versions == {"notes": 1, "custom_models": 1}


def test_a_database_from_a_newer_shim_is_refused(tmp_path: Path) -> None:
    _open(tmp_path, NOTES_V2).close()
    with pytest.raises(StoreError, match="written by a newer ollama-shim"):
        _open(tmp_path, NOTES_V1)


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = _open(tmp_path, NOTES_V1)

    def half(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO notes VALUES ('a', 'b')")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        store.run_blocking(half)
    assert store.run_blocking(lambda c: c.execute("SELECT count(*) FROM notes").fetchone()[0]) == 0
    store.close()


async def test_a_read_does_not_wait_for_another_process_writing(tmp_path: Path) -> None:
    store = _open(tmp_path, NOTES_V1)
    other = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        count = await asyncio.wait_for(store.read(lambda c: c.execute("SELECT count(*) FROM notes").fetchone()[0]), 2)
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.close()
    assert count == 0


def test_a_write_waiting_for_another_process_lets_this_process_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _open(tmp_path, NOTES_V1)
    attempts = threading.Semaphore(0)
    real_time = store_module.time

    class CountingTime:
        monotonic = staticmethod(real_time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            attempts.release()
            real_time.sleep(seconds)

    monkeypatch.setattr(store_module, "time", CountingTime)
    other = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    insert = "INSERT INTO notes VALUES ('w', 'x')"
    writer = threading.Thread(target=store.run_blocking, args=(lambda c: c.execute(insert),))
    writer.start()
    try:
        assert attempts.acquire(timeout=5) and attempts.acquire(timeout=5), "the write never retried"
        reader = threading.Thread(target=store.run_blocking, args=(lambda c: c.execute("SELECT 1").fetchall(),),
                                  kwargs={"write": False})
        reader.start()
        reader.join(2)
        assert not reader.is_alive(), "the read waited for the other process's write"
        assert writer.is_alive()
    finally:
        other.execute("COMMIT")
        other.close()
        writer.join(10)
    assert store.run_blocking(lambda c: c.execute("SELECT k FROM notes").fetchall()) == [("w",)]
    store.close()


def _garbage(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / DB_FILE).write_bytes(b"this is not a database" * 200)


def _corrupt_pages(path: Path) -> None:
    store = _open(path, NOTES_V1)
    store.run_blocking(lambda c: c.executemany("INSERT INTO notes VALUES (?, ?)",
                                               ((str(i), "x" * 300) for i in range(2000))))
    store.close()
    data = bytearray((path / DB_FILE).read_bytes())
    data[8192:16384] = b"\xff" * 8192
    (path / DB_FILE).write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("spoil", "data_dir", "expected"),
    [
        (_garbage, "db", "file is not a database"),
        (_corrupt_pages, "db", "integrity check failed"),
        (lambda p: p.write_text("a file where the directory should be"), "db/sub", "cannot create the data directory"),
    ],
    ids=["not-a-database", "corrupt-pages", "unwritable-directory"],
)
def test_an_unusable_store_is_one_line_and_exit_2_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil, data_dir: str, expected: str
) -> None:
    spoil(tmp_path / "db")
    status = cli.main(["--listen", "127.0.0.1:0", "--backend", "http://127.0.0.1:9",
                       "--data-dir", str(tmp_path / data_dir)])
    err = capsys.readouterr().err
    assert status == 2
    assert expected in err
    assert err.startswith("ollama-shim: error: ")
    assert err.count("\n") == 1


# -- several processes --------------------------------------------------------------------------

WRITER = """
import sys
from ollama_shim import custom_models as cm
from ollama_shim.store import Store
from ollama_shim.translate.customise import CustomModel
data_dir, prefix, count, same = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "same"
store = Store(data_dir, (cm.SCHEMA,)).open()
i = 0
while count == 0 or i < count:
    tag = f"{prefix}-{i}"
    model = CustomModel(name=(prefix if same else tag) + ":latest", base="base", system=tag,
                        parameters={"seed": i}, messages=(("user", tag),) * 40, license=(tag,))
    store.run_blocking(lambda c: cm.upsert(c, model))
    i += 1
"""


def _writer(data_dir: Path, prefix: str, count: int, *, same: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(data_dir), prefix, str(count),
                             "same" if same else "own"], env=env)


def _all(data_dir: Path) -> list[cm.CustomModel]:
    store = _open(data_dir, cm.SCHEMA)  # also runs the integrity check
    try:
        return store.run_blocking(cm.select_all)
    finally:
        store.close()


def _whole(model: cm.CustomModel) -> bool:
    """Every part of the row came from the same write."""
    tag = model.system
    return model.messages == (("user", tag),) * 40 and model.license == (tag,) and \
        model.parameters == {"seed": int(tag.rsplit("-", 1)[1])}


def test_two_processes_create_different_models_at_once(tmp_path: Path) -> None:
    writers = [_writer(tmp_path, prefix, 150) for prefix in ("left", "right")]
    assert [w.wait(120) for w in writers] == [0, 0]
    models = _all(tmp_path)
    assert len(models) == 300
    assert all(_whole(m) for m in models)


def test_two_processes_create_the_same_name_at_once_and_one_wins(tmp_path: Path) -> None:
    writers = [_writer(tmp_path, prefix, 150, same=True) for prefix in ("same", "same")]
    assert [w.wait(120) for w in writers] == [0, 0]
    models = _all(tmp_path)
    assert [m.name for m in models] == ["same:latest"]
    assert _whole(models[0])


def test_a_process_killed_while_creating_leaves_a_readable_store(tmp_path: Path) -> None:
    writer = _writer(tmp_path, "loop", 0)
    deadline = time.monotonic() + 60
    try:
        while not (tmp_path / DB_FILE).exists() or len(_all(tmp_path)) < 50:
            assert time.monotonic() < deadline, "the writer wrote nothing"
            assert writer.poll() is None, "the writer stopped on its own"
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    models = _all(tmp_path)
    assert len(models) >= 50
    assert all(_whole(m) for m in models)


async def test_a_create_waiting_for_another_writer_does_not_stall_the_event_loop(
    lmstudio: LMStudioEmulation, tmp_path: Path
) -> None:
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url, \
            async_client(url) as api:
        other = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another worker in the middle of a write
        try:
            create = asyncio.ensure_future(api.create(model="late", from_="qwen2.5-7b-instruct"))
            listed = await asyncio.wait_for(api.list(), 5)  # answered meanwhile
            assert not create.done()
        finally:
            other.execute("COMMIT")
            other.close()
        assert (await asyncio.wait_for(create, 10)).status == "success"
    assert "qwen2.5-7b-instruct:latest" in {m.model for m in listed.models}


async def test_a_store_busy_for_too_long_is_a_503_not_a_crash(
    lmstudio: LMStudioEmulation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 200)
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url, \
            aiohttp.ClientSession() as http:
        other = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            body = {"model": "late", "from": "qwen2.5-7b-instruct"}
            async with http.post(url + "/api/create", json=body) as resp:
                status, answer = resp.status, await resp.json()
        finally:
            other.execute("ROLLBACK")
            other.close()
        async with http.post(url + "/api/create", json={**body, "stream": False}) as resp:
            assert resp.status == 200  # and the next one works
    assert status == 503
    assert answer["error"].startswith(f"the model store {tmp_path / DB_FILE} failed: database is locked")
