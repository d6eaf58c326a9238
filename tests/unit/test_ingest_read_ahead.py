"""Ingest's read-ahead on a new container: the model loads beside the first keys, and AWS clients are made once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pictrace.errors import WeightsUnavailable
from pictrace.ingest import Ingestor, ReadAhead, ReadKey
from pictrace.settings import Settings
from pictrace.storage import ProcessClients, Store, new_client, s3_client

SETTINGS = Settings(bucket="bucket")


class NewContainer(Ingestor):
    """An ingestor whose model load is seen (a fake one) and whose stages touch no S3."""

    def __init__(self, load: Any) -> None:
        super().__init__(SETTINGS, store=Store("bucket", client=object()))
        self.load = load
        self.loading = threading.Event()
        self.read_saw_loading: bool | None = None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self.loading.set()
            self._embedder = self.load()
        return self._embedder

    def read(self, key: str) -> ReadKey:
        self.read_saw_loading = self.loading.wait(timeout=10)  # set only by a load that started beside this read
        return ReadKey(key)

    def embed(self, loaded: ReadKey) -> ReadKey:
        self.embedder  # noqa: B018  # what embed needs first (here: raises what the load raised)
        return loaded


def test_a_new_containers_model_loads_while_the_first_key_is_read() -> None:
    ingestor = NewContainer(load=object)
    ahead = ReadAhead(ingestor, ["images/a.jpg"])
    try:
        future = ahead.take("images/a.jpg")
        assert future is not None and future.result(timeout=30).key == "images/a.jpg"
    finally:
        ahead.close()
    assert ingestor.read_saw_loading is True


def test_a_failed_model_load_ahead_fails_where_the_key_is_embedded() -> None:
    def unavailable() -> Any:
        raise WeightsUnavailable("no model here")

    ingestor = NewContainer(load=unavailable)
    ahead = ReadAhead(ingestor, ["images/a.jpg"])
    try:
        future = ahead.take("images/a.jpg")
        assert future is not None
        with pytest.raises(WeightsUnavailable, match="no model here"):
            future.result(timeout=30)
    finally:
        ahead.close()


def test_a_loaded_model_is_not_loaded_again() -> None:
    loads: list[int] = []
    ingestor = NewContainer(load=lambda: loads.append(1) or object())
    ingestor.embedder  # noqa: B018
    with ThreadPoolExecutor(1) as pool:
        ingestor.load_model_ahead(pool)
    assert loads == [1]


def test_threads_that_ask_together_get_the_one_client_made_once() -> None:
    made: list[str | None] = []

    def make(region: str | None) -> object:
        made.append(region)
        time.sleep(0.2)  # the others ask meanwhile
        return object()

    clients = ProcessClients(make)
    together = threading.Barrier(4)

    def ask(_: int) -> object:
        together.wait()
        return clients()

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(ask, range(4)))
    assert made == [None] and all(client is got[0] for client in got)
    assert clients("eu-west-1") is not got[0] and clients.held() == 2
    clients.cache_clear()
    assert clients.held() == 0 and clients() is not got[0] and len(made) == 3


def test_the_s3_client_is_made_once_for_threads_that_ask_together() -> None:
    s3_client.cache_clear()
    together = threading.Barrier(3)

    def ask(_: int) -> Any:
        together.wait()
        return s3_client()

    try:
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(ask, range(3)))
        assert all(client is got[0] for client in got) and s3_client.held() == 1
    finally:
        s3_client.cache_clear()


def test_clients_are_never_made_in_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's sessions are not thread-safe: new_client makes one client at a time, whatever the service."""
    import pictrace.storage

    active, most = [0], [0]
    lock = threading.Lock()

    def client(self: object, service: str, **kwargs: Any) -> object:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return object()

    monkeypatch.setattr(pictrace.storage.boto3.session.Session, "client", client)
    together = threading.Barrier(4)

    def make(service: str) -> object:
        together.wait()
        return new_client(service, region_name="us-east-1")

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(make, ["s3", "lambda", "s3vectors", "s3"]))
    assert len({id(c) for c in made}) == 4 and most[0] == 1
