"""A small, typed client for the eventfold JSON-lines protocol.

Standard library only. One `Client` is one TCP connection (optionally TLS,
optionally with a token); every request is a method that returns the reply
body as a dict, and a refused request raises `EventfoldError` carrying the
protocol's code. Requests may be pipelined: replies are matched to requests
by `msg_id`, and pushed subscription events are queued for the subscription
they belong to.

    from eventfold_client import Client
    with Client.connect("127.0.0.1", 7878) as c:
        c.append("order-1", "Placed", {"total": 12}, version="no_stream")
        for event in c.read_all(category="order")["events"]:
            print(event["sequence_number"], event["event_type"])
"""

from __future__ import annotations

import collections
import json
import socket
import ssl
import threading
from typing import Any, Deque, Dict, Iterator, List, Optional, Union

__all__ = ["Client", "EventfoldError", "ConcurrencyError", "Subscription"]

Version = Union[int, str, Dict[str, int]]
Body = Dict[str, Any]


class EventfoldError(Exception):
    """A request the node refused: `code` is the protocol's error code."""

    def __init__(self, code: int, text: str, body: Optional[Body] = None) -> None:
        super().__init__(f"eventfold error {code}: {text}")
        self.code = code
        self.text = text
        self.body = body or {}


class ConcurrencyError(EventfoldError):
    """An append at a version the aggregate is not at (`concurrency_error`)."""

    def __init__(self, body: Body) -> None:
        super().__init__(0, str(body.get("error", "")), body)
        self.current_version: int = int(body.get("current_version", 0))
        self.aggregate_id: Optional[str] = body.get("aggregate_id")


class Subscription:
    """Events pushed for one subscription, as an iterator of event dicts."""

    def __init__(self, client: "Client", subscription_id: int) -> None:
        self._client = client
        self.id = subscription_id

    def __iter__(self) -> Iterator[Body]:
        return self

    def __next__(self) -> Body:
        return self._client._next_event(self.id)

    def close(self) -> None:
        """Ends the subscription (`unsubscribe`)."""
        self._client.request({"type": "unsubscribe", "subscription_id": self.id})


class Client:
    """One connection to an eventfold node."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._lock = threading.Lock()
        self._next_id = 1
        self._replies: Dict[int, Body] = {}
        self._events: Dict[int, Deque[Body]] = collections.defaultdict(collections.deque)

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 7878,
        *,
        token: Optional[str] = None,
        tls: Optional[ssl.SSLContext] = None,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = 30.0,
    ) -> "Client":
        """Connects, wraps the socket in `tls` when given, and presents
        `token` when given (the node closes the connection on a wrong one)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
        client = cls(sock)
        if token is not None:
            client.request({"type": "auth", "token": token})
        return client

    def close(self) -> None:
        """Closes the connection."""
        try:
            self._file.close()
        finally:
            self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the wire -----------------------------------------------------------

    def send(self, body: Body) -> int:
        """Sends a request without waiting and returns its `msg_id`."""
        with self._lock:
            msg_id = self._next_id
            self._next_id += 1
        body = dict(body, msg_id=msg_id)
        line = json.dumps({"src": "client", "dest": "eventstore", "body": body}, separators=(",", ":"))
        self._sock.sendall(line.encode("utf-8") + b"\n")
        return msg_id

    def wait(self, msg_id: int) -> Body:
        """The reply to request `msg_id`; raises on a refusal."""
        while msg_id not in self._replies:
            self._read_one()
        body = self._replies.pop(msg_id)
        kind = body.get("type")
        if kind == "error":
            raise EventfoldError(int(body.get("code", 0)), str(body.get("text", "")), body)
        if kind == "concurrency_error":
            raise ConcurrencyError(body)
        return body

    def request(self, body: Body) -> Body:
        """Sends a request and returns its reply body."""
        return self.wait(self.send(body))

    def _read_one(self) -> None:
        line = self._file.readline()
        if not line:
            raise EventfoldError(0, "the node closed the connection")
        body = json.loads(line)["body"]
        if body.get("type") == "event" and "subscription_id" in body:
            self._events[int(body["subscription_id"])].append(body["event"])
        elif body.get("in_reply_to") is not None:
            self._replies[int(body["in_reply_to"])] = body
        elif body.get("type") == "error":
            raise EventfoldError(int(body.get("code", 0)), str(body.get("text", "")), body)

    def _next_event(self, subscription_id: int) -> Body:
        queue = self._events[subscription_id]
        while not queue:
            self._read_one()
        return queue.popleft()

    # -- messages -----------------------------------------------------------

    @staticmethod
    def event(
        event_type: str,
        data: Any,
        *,
        event_id: Optional[str] = None,
        metadata: Optional[Body] = None,
        tags: Optional[List[str]] = None,
        schema_version: Optional[int] = None,
    ) -> Body:
        """One event of an append."""
        e: Body = {"event_type": event_type, "event_data": data}
        if event_id is not None:
            e["event_id"] = event_id
        if metadata:
            e["metadata"] = metadata
        if tags:
            e["tags"] = tags
        if schema_version is not None:
            e["schema_version"] = schema_version
        return e

    def append(self, aggregate_id: str, event_type: str, data: Any, *, version: Version = "any", **kw: Any) -> Body:
        """Appends one event (`appended`)."""
        condition = kw.pop("condition", None)
        body = dict(self.event(event_type, data, **kw), type="append", aggregate_id=aggregate_id, version=version)
        if condition is not None:
            body["condition"] = condition
        return self.request(body)

    def append_batch(self, aggregate_id: str, events: List[Body], *, version: Version = "any",
                     condition: Optional[Body] = None) -> Body:
        """Appends events to one aggregate, all or nothing (`appended_batch`)."""
        body: Body = {"type": "append_batch", "aggregate_id": aggregate_id, "version": version, "events": events}
        if condition is not None:
            body["condition"] = condition
        return self.request(body)

    def append_many(self, streams: List[Body], *, checkpoint: Optional[Body] = None,
                    condition: Optional[Body] = None) -> Body:
        """Appends to several aggregates (and moves a checkpoint) in one commit."""
        body: Body = {"type": "append_many", "streams": streams}
        if checkpoint is not None:
            body["checkpoint"] = checkpoint
        if condition is not None:
            body["condition"] = condition
        return self.request(body)

    def read_stream(self, aggregate_id: str, **options: Any) -> Body:
        """One aggregate's events (`stream_events`)."""
        return self.request(dict(options, type="read_stream", aggregate_id=aggregate_id))

    def read_all(self, **options: Any) -> Body:
        """The global log (`all_events`); options as in docs/protocol.md."""
        return self.request(dict(options, type="read_all"))

    def read_query(self, query: Body, **options: Any) -> Body:
        """A DCB read (`query_events`: `events` and `head`)."""
        return self.request(dict(options, type="read_query", query=query))

    def get_event(self, *, event_id: Optional[str] = None, sequence_number: Optional[int] = None) -> Body:
        """One event by id or sequence number (`event_found`)."""
        body: Body = {"type": "get_event"}
        if event_id is not None:
            body["event_id"] = event_id
        if sequence_number is not None:
            body["sequence_number"] = sequence_number
        return self.request(body)

    def list_streams(self, **options: Any) -> Body:
        """Aggregates, paged (`streams`)."""
        return self.request(dict(options, type="list_streams"))

    def get_checkpoint(self, consumer: str) -> Body:
        """A durable consumer's checkpoint (`checkpoint`)."""
        return self.request({"type": "get_checkpoint", "consumer": consumer})

    def ack(self, consumer: str, sequence_number: int) -> Body:
        """Moves a durable consumer's checkpoint forward (`acked`)."""
        return self.request({"type": "ack", "consumer": consumer, "sequence_number": sequence_number})

    def stats(self) -> Body:
        """Store counters (`stats_ok`)."""
        return self.request({"type": "stats"})

    def delete_stream(self, aggregate_id: str, reason: str, *, hard: bool = False) -> Body:
        """Deletes a stream, soft or for good (`stream_deleted`)."""
        return self.request({"type": "delete_stream", "aggregate_id": aggregate_id, "reason": reason, "hard": hard})

    def subscribe(self, **options: Any) -> Subscription:
        """Starts a subscription; iterate the result for its events."""
        reply = self.request(dict(options, type="subscribe"))
        return Subscription(self, int(reply["subscription_id"]))
