"""A real service on 127.0.0.1 (uvicorn on a free port) over a store in a temporary state
directory, and tokens for two teams. The tests play the controller's part by writing to
the store, as a controller would (the service never runs jobs itself)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slicebox.client import Client
from slicebox.pool.composition import Composition, Part
from slicebox.pool.files import load_pool
from slicebox.pool.model import Pool
from slicebox.service import create_app
from slicebox.service.server import Service, serve
from slicebox.snapshot import JobState
from slicebox.store import Store

TWO_CORES = ("name: two-cores\nnodes:\n"
             "  - {name: here, memory_gib: 4, cores: {0: \"0-1\"}}\n")


@dataclass
class Tokens:
    a_read: str
    a_submit: str
    b_submit: str
    admin: str


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    home = tmp_path / "state"
    home.mkdir()
    return home


@pytest.fixture()
def store(state: Path) -> Iterator[Store]:
    opened = Store.open(state)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture()
def pool(tmp_path: Path) -> Pool:
    path = tmp_path / "pool.yaml"
    path.write_text(TWO_CORES)
    return load_pool(path)


@pytest.fixture()
def service(store: Store, pool: Pool, state: Path) -> Iterator[Service]:
    app = create_app(store, pool, poll_seconds=0.05)
    running = serve(app, port=0, state_dir=state)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture()
def tokens(store: Store) -> Tokens:
    return Tokens(a_read=store.create_token("team-a", "read")[1],
                  a_submit=store.create_token("team-a", "submit")[1],
                  b_submit=store.create_token("team-b", "submit")[1],
                  admin=store.create_token("ops", "admin")[1])


def _clients(url: str) -> Iterator:
    made: list[Client] = []

    def make(token: str) -> Client:
        made.append(Client(url, token, timeout=10))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture()
def client_for(service: Service) -> Iterator:
    yield from _clients(service.url)


@dataclass
class Shared:
    """One service for a whole module, for tests that change nothing (refusals): starting
    a server per test is most of what such a test costs."""

    state: Path
    store: Store
    service: Service
    tokens: Tokens
    queued: str  # a job of team-a's
    folder: Path  # a submitting directory


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    root = tmp_path_factory.mktemp("shared")
    home = root / "state"
    home.mkdir()
    (root / "pool.yaml").write_text(TWO_CORES)
    opened = Store.open(home)
    running = serve(create_app(opened, load_pool(root / "pool.yaml"), poll_seconds=0.05),
                    port=0, state_dir=home)
    try:
        issued = Tokens(a_read=opened.create_token("team-a", "read")[1],
                        a_submit=opened.create_token("team-a", "submit")[1],
                        b_submit=opened.create_token("team-b", "submit")[1],
                        admin=opened.create_token("ops", "admin")[1])
        with Client(running.url, issued.a_submit) as client:
            queued = client.submit(job_file(root, "queued"), cwd=root)["id"]
        yield Shared(home, opened, running, issued, queued, root)
    finally:
        running.stop()
        opened.close()


@pytest.fixture()
def shared_client_for(shared: Shared) -> Iterator:
    yield from _clients(shared.service.url)


def job_file(folder: Path, name: str = "hello", extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ncommand: [python, -c, 'print(1)']\n{extra}")
    return path


def run_it(store: Store, job_id: str, log: Path, cores: tuple[int, ...] = (0,)) -> None:
    """What the controller and the local backend record when a job starts."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    store.start(job_id, JobState.RUNNING,
                Composition(job_id, (Part("here", (), cores, 1.0),)), "placed")
    store.set_process(job_id, 4242, 1.0, log_path=str(log))
