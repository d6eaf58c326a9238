"""The local stack's moto server over real HTTP: a client's requests share one kept-open connection, as they do
with AWS's endpoints, and what moto answers is unchanged by it (bodies sent with Expect: 100-continue included)."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local import LocalStack, free_port
from infra.motoserver import MotoServer, moto_server


@pytest.fixture
def server() -> Iterator[MotoServer]:
    started = moto_server("127.0.0.1", free_port())
    started.start()
    try:
        yield started
    finally:
        started.stop()


def _client(server: MotoServer, service: str) -> Any:
    """A client as the local stack makes one (the stack itself is not started: the server is this test's)."""
    return LocalStack(port=server.port).client(service)


def test_a_clients_requests_share_one_connection(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    s3, sqs = _client(server, "s3"), _client(server, "sqs")
    opened: list[Any] = []
    connect = socket.socket.connect

    def counted(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[1:2] == (server.port,):  # this server's, not another thread's
            opened.append(address)
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counted)
    s3.create_bucket(Bucket="keepalive")
    body = os.urandom(2_000_000)
    s3.upload_fileobj(io.BytesIO(body), "keepalive", "big")  # boto3 asks for 100-continue before a large body
    for i in range(10):
        s3.put_object(Bucket="keepalive", Key=f"k/{i}", Body=str(i).encode(), IfNoneMatch="*")
    assert [s3.get_object(Bucket="keepalive", Key=f"k/{i}")["Body"].read() for i in range(10)] == [
        str(i).encode() for i in range(10)
    ]
    assert s3.get_object(Bucket="keepalive", Key="big")["Body"].read() == body
    assert s3.list_objects_v2(Bucket="keepalive", Prefix="k/")["KeyCount"] == 10
    url = sqs.create_queue(QueueName="keepalive")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["hello"]
    assert len(opened) == 2  # 27 requests: one connection per client


def test_a_stopped_server_refuses_connections(server: MotoServer) -> None:
    _client(server, "s3").create_bucket(Bucket="stopping")
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
