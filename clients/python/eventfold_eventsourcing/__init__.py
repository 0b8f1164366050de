"""A persistence module for the Python `eventsourcing` library on eventfold.

    PERSISTENCE_MODULE=eventfold_eventsourcing
    EVENTFOLD_ADDRESS=127.0.0.1:7878        # the node (`eventfold serve --tcp`)
    EVENTFOLD_TOKEN=...                     # or EVENTFOLD_TOKEN_FILE=path
    EVENTFOLD_TLS_CA=ca.pem                 # turns TLS on (EVENTFOLD_TLS=y: system CAs)
    EVENTFOLD_TLS_SERVER_NAME=node.example  # when it differs from the host

Mapping (see README.md):

* an originator id is a stream (`aggregate_id`, a UUID in its canonical
  text form); an originator version is kept in the event's metadata (`v`)
  and checked with the stream's expected version: the first event of a
  stream fixes its base (0 or 1, or any), and the event with originator
  version `o` is the stream's version `o - base + 1`, appended with
  `{"first": o - base + 1}`, so a duplicate version is a
  `concurrency_error`, raised as `IntegrityError`;
* a notification id is the event's global position (gapless from 1);
* a tracking record is a durable consumer checkpoint: the application name
  is the consumer name; events and tracking commit in one `append_many`;
* snapshots live in streams `snapshot:<originator id>` (any versions,
  unique by a derived event id) and are left out of notifications.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatabaseError,
    DataError,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    InternalError,
    Notification,
    OperationalError,
    ProcessRecorder,
    ProgrammingError,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, resolve_topic

from eventfold_client import Client, ConcurrencyError, EventfoldError

__all__ = [
    "ConnectionPool",
    "EventfoldAggregateRecorder",
    "EventfoldApplicationRecorder",
    "EventfoldTrackingRecorder",
    "EventfoldProcessRecorder",
    "EventfoldSubscription",
    "EventfoldFactory",
    "Factory",
]

Body = Dict[str, Any]
SNAPSHOT_PREFIX = "snapshot:"
# Derived ids of snapshot events: one (stream, version) is one event id.
SNAPSHOT_NAMESPACE = UUID("6f1f7c2e-3c51-4d1e-9a52-0c1d6b0e7a11")
PAGE = 10_000  # the node's largest `limit`
MAX_CACHED_STREAMS = 100_000


# -- connections ----------------------------------------------------------


class ConnectionPool:
    """Thread-safe pool of `Client` connections to one node."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: Optional[str] = None,
        tls: Optional[ssl.SSLContext] = None,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = 30.0,
    ) -> None:
        self.host, self.port = host, port
        self._token, self._tls, self._server_hostname = token, tls, server_hostname
        self._timeout = timeout
        self._idle: List[Client] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_env(cls, env: Environment) -> "ConnectionPool":
        """A pool configured by EVENTFOLD_* variables (see the module docs)."""
        host, port = parse_address(env.get("EVENTFOLD_ADDRESS", "127.0.0.1:7878") or "127.0.0.1:7878")
        timeout_text = env.get("EVENTFOLD_TIMEOUT", "30") or "30"
        return cls(
            host,
            port,
            token=read_token(env),
            tls=tls_context(env),
            server_hostname=env.get("EVENTFOLD_TLS_SERVER_NAME") or None,
            timeout=float(timeout_text) if float(timeout_text) > 0 else None,
        )

    def connect(self, *, timeout: Optional[float] = None) -> Client:
        """A new connection, not from the pool (a subscription's own)."""
        try:
            return Client.connect(
                self.host,
                self.port,
                token=self._token,
                tls=self._tls,
                server_hostname=self._server_hostname,
                timeout=timeout if timeout is not None else self._timeout,
            )
        except EventfoldError as e:
            raise InterfaceError(f"eventfold node {self.host}:{self.port} refused the connection: {e}") from e
        except OSError as e:
            raise OperationalError(f"cannot connect to the eventfold node at {self.host}:{self.port}: {e}") from e

    @contextmanager
    def client(self) -> Iterator[Client]:
        """A pooled connection for one exchange; a broken one is dropped."""
        if self._closed:
            raise ProgrammingError("the eventfold connection pool is closed")
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self.connect()
        try:
            yield client
        except (OSError, ValueError) as e:
            client.close()
            raise OperationalError(f"eventfold connection to {self.host}:{self.port} failed: {e}") from e
        except EventfoldError as e:
            if e.code == 0 and not isinstance(e, ConcurrencyError):
                client.close()  # the node closed the connection
            else:
                self._give_back(client)
            raise
        except BaseException:
            client.close()
            raise
        else:
            self._give_back(client)

    def _give_back(self, client: Client) -> None:
        with self._lock:
            if self._closed:
                client.close()
            else:
                self._idle.append(client)

    def request(self, body: Body) -> Body:
        """Sends one request on a pooled connection and returns the reply."""
        with self.client() as c:
            return c.request(body)

    def close(self) -> None:
        """Closes every idle connection; the pool takes no more requests."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()


def parse_address(address: str) -> Tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:7878`) as a pair."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise InterfaceError(f"EVENTFOLD_ADDRESS {address!r} is not host:port (e.g. 127.0.0.1:7878)")
    return host.strip("[]") or "127.0.0.1", int(port)


def read_token(env: Environment) -> Optional[str]:
    """EVENTFOLD_TOKEN, or the contents of EVENTFOLD_TOKEN_FILE (without trailing whitespace)."""
    token = env.get("EVENTFOLD_TOKEN")
    if token:
        return token
    path = env.get("EVENTFOLD_TOKEN_FILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip()
    except OSError as e:
        raise InterfaceError(f"cannot read EVENTFOLD_TOKEN_FILE {path!r}: {e}") from e


def tls_context(env: Environment) -> Optional[ssl.SSLContext]:
    """A client TLS context when EVENTFOLD_TLS_CA or EVENTFOLD_TLS=y is set."""
    ca = env.get("EVENTFOLD_TLS_CA")
    wanted = (env.get("EVENTFOLD_TLS", "") or "").lower() in ("y", "yes", "t", "true", "on", "1")
    if not ca and not wanted:
        return None
    try:
        return ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as e:
        raise InterfaceError(f"cannot load EVENTFOLD_TLS_CA {ca!r}: {e}") from e


# -- errors ---------------------------------------------------------------


def translate(e: EventfoldError) -> DatabaseError:
    """The library's exception for a refusal from the node."""
    if isinstance(e, ConcurrencyError) or e.code == 22:
        return IntegrityError(str(e))
    if e.code == 12:
        return DataError(str(e))
    if e.code == 11:
        return OperationalError(str(e))
    if e.code == 1001:
        return InterfaceError(str(e))
    if e.code in (10, 20, 1000):
        return ProgrammingError(str(e))
    return InternalError(str(e))


# -- the event mapping ----------------------------------------------------


def stream_id(originator_id: Union[UUID, str], snapshots: bool) -> str:
    sid = str(originator_id)
    return SNAPSHOT_PREFIX + sid if snapshots else sid


def originator_id_of(aggregate_id: str) -> Union[UUID, str]:
    """A stream id as the library's originator id: a UUID when it is one."""
    if len(aggregate_id) == 36:
        try:
            u = UUID(aggregate_id)
        except ValueError:
            return aggregate_id
        if str(u) == aggregate_id:
            return u
    return aggregate_id


def encode_state(state: bytes) -> Tuple[Any, Optional[str]]:
    """A state as `event_data`: the JSON itself when it round-trips exactly
    (the library's JSON transcoder writes such), else base64 text."""
    if state[:1] in (b"{", b"[") and state.count(b"{") + state.count(b"[") < 100:
        try:
            text = state.decode("utf-8")
            obj = json.loads(text, parse_constant=_no_constant)
            if json.dumps(obj, separators=(",", ":"), ensure_ascii=False) == text:
                return obj, None
        except ValueError:
            pass
    return base64.b64encode(state).decode("ascii"), "base64"


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def decode_state(data: Any, metadata: Body) -> bytes:
    if metadata.get("es_state") == "base64":
        return base64.b64decode(data)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def wire_event(s: StoredEvent, snapshots: bool) -> Body:
    data, encoding = encode_state(s.state)
    metadata: Body = {"v": s.originator_version}
    if encoding:
        metadata["es_state"] = encoding
    e: Body = {"event_type": s.topic, "event_data": data, "metadata": metadata}
    if snapshots:
        e["event_id"] = str(uuid.uuid5(SNAPSHOT_NAMESPACE, f"{s.originator_id}\x00{s.originator_version}"))
    return e


def originator_version_of(event: Body) -> int:
    v = event.get("metadata", {}).get("v")
    if not isinstance(v, int):
        raise DataError(f"event {event.get('sequence_number')} of {event.get('aggregate_id')!r} has no originator version")
    return v


def stored_event_of(event: Body, aggregate_id: str) -> StoredEvent:
    metadata = event.get("metadata", {})
    oid = aggregate_id[len(SNAPSHOT_PREFIX):] if aggregate_id.startswith(SNAPSHOT_PREFIX) else aggregate_id
    return StoredEvent(
        originator_id=originator_id_of(oid),
        originator_version=originator_version_of(event),
        topic=event["event_type"],
        state=decode_state(event["event_data"], metadata),
    )


def notification_of(event: Body) -> Notification:
    s = stored_event_of(event, event["aggregate_id"])
    return Notification(
        id=int(event["sequence_number"]),
        originator_id=s.originator_id,
        originator_version=s.originator_version,
        topic=s.topic,
        state=s.state,
    )


def is_hidden(aggregate_id: str) -> bool:
    """Streams that are not the application's notifications."""
    return aggregate_id.startswith(SNAPSHOT_PREFIX) or aggregate_id.startswith("$")


def group_by_stream(stored_events: Sequence[StoredEvent], snapshots: bool) -> Dict[str, List[int]]:
    """Indexes of the events of each stream, streams in first-seen order;
    a version twice, or not consecutive in one stream, is refused."""
    groups: Dict[str, List[int]] = {}
    seen = set()
    for i, s in enumerate(stored_events):
        key = (str(s.originator_id), s.originator_version)
        if key in seen:
            raise IntegrityError(f"stored events are not unique: {s.originator_id} version {s.originator_version} twice")
        seen.add(key)
        groups.setdefault(stream_id(s.originator_id, snapshots), []).append(i)
    if not snapshots:
        for sid, idx in groups.items():
            versions = [stored_events[i].originator_version for i in idx]
            if versions != list(range(versions[0], versions[0] + len(versions))):
                raise IntegrityError(f"versions of {sid} in one insert must be consecutive, got {versions}")
    return groups


# -- recorders ------------------------------------------------------------


class EventfoldAggregateRecorder(AggregateRecorder):
    """Stored events as events of eventfold streams (see the module docs)."""

    def __init__(self, pool: ConnectionPool, *, snapshots: bool = False) -> None:
        self.pool = pool
        self.snapshots = snapshots
        self._bases: Dict[str, int] = {}  # stream -> originator version of its first event
        self._bases_lock = threading.Lock()

    # writes

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Optional[Sequence[int]]:
        self._insert(stored_events, kwargs.get("tracking"))
        return None

    def _insert(self, stored_events: Sequence[StoredEvent], tracking: Optional[Tracking]) -> List[int]:
        """Appends the events (and moves the tracking checkpoint) in one
        commit; the events' global positions, in the order given."""
        if not stored_events and tracking is None:
            return []
        groups = group_by_stream(stored_events, self.snapshots)
        checkpoint = None
        if tracking is not None:
            checkpoint = {"consumer": tracking.application_name, "position": tracking.notification_id}
        guessed = {sid for sid in groups if not self.snapshots and self._base(sid) is None}
        while True:
            streams = [self._wire_stream(sid, [stored_events[i] for i in idx]) for sid, idx in groups.items()]
            try:
                body: Body = {"type": "append_many", "streams": streams}
                if checkpoint is not None:
                    body["checkpoint"] = checkpoint
                reply = self.pool.request(body)
            except ConcurrencyError as e:
                sid = e.aggregate_id or (next(iter(groups)) if len(groups) == 1 else None)
                if sid in guessed and e.current_version > 0:
                    guessed.discard(sid)
                    self._learn_base(sid)
                    continue  # the stream existed: append at its real version
                raise IntegrityError(f"{sid}: an event at this originator version is recorded already ({e.text})") from e
            except EventfoldError as e:
                raise translate(e) from e
            return self._positions(reply, groups, len(stored_events))

    def _wire_stream(self, sid: str, events: List[StoredEvent]) -> Body:
        entry: Body = {"aggregate_id": sid, "events": [wire_event(s, self.snapshots) for s in events]}
        if self.snapshots:
            entry["version"] = "any"
            return entry
        base = self._base(sid)
        if base is None:
            entry["version"] = "no_stream"
            return entry
        first = events[0].originator_version - base + 1
        if first < 1:
            raise IntegrityError(f"{sid}: version {events[0].originator_version} is below the stream's first ({base})")
        entry["version"] = {"first": first}
        return entry

    def _positions(self, reply: Body, groups: Dict[str, List[int]], count: int) -> List[int]:
        positions = [0] * count
        for entry, (sid, idx) in zip(reply.get("streams", []), groups.items()):
            if entry.get("already_stored"):
                raise IntegrityError(f"{sid}: a snapshot at this version is recorded already")
            first = int(entry["first_sequence_number"])
            for k, i in enumerate(idx):
                positions[i] = first + k
        return positions

    # the base of each stream

    def _base(self, sid: str) -> Optional[int]:
        return self._bases.get(sid)

    def _remember_base(self, sid: str, base: int) -> None:
        with self._bases_lock:
            if len(self._bases) >= MAX_CACHED_STREAMS:
                self._bases.clear()
            self._bases[sid] = base

    def _learn_base(self, sid: str) -> Optional[int]:
        """Reads the stream's first event; None for an empty stream."""
        events = self._read_stream(sid, from_version=1, limit=1, backwards=False)
        if not events:
            return None
        base = originator_version_of(events[0]) - int(events[0]["version"]) + 1
        self._remember_base(sid, base)
        return base

    # reads

    def _read_stream(self, sid: str, *, from_version: Optional[int], limit: int, backwards: bool) -> List[Body]:
        body: Body = {"type": "read_stream", "aggregate_id": sid, "limit": limit, "backwards": backwards}
        if from_version is not None:
            body["from_version"] = from_version
        try:
            reply = self.pool.request(body)
        except EventfoldError as e:
            raise translate(e) from e
        events: List[Body] = reply.get("events", [])
        if events and not self.snapshots:
            e0 = events[0]
            self._remember_base(sid, originator_version_of(e0) - int(e0["version"]) + 1)
        return events

    def select_events(
        self,
        originator_id: Union[UUID, str],
        *,
        gt: Optional[int] = None,
        lte: Optional[int] = None,
        desc: bool = False,
        limit: Optional[int] = None,
    ) -> Sequence[StoredEvent]:
        sid = stream_id(originator_id, self.snapshots)
        base = None if self.snapshots else self._base(sid)
        if base is None and not self.snapshots and (gt is not None or lte is not None):
            base = self._learn_base(sid)
            if base is None:
                return []
        start = self._start_version(base, gt, lte, desc)
        if start is not None and start < 1:
            return []
        ordered = not self.snapshots
        results: List[StoredEvent] = []
        for event in self._pages(sid, start, desc):
            o = originator_version_of(event)
            if (gt is not None and o <= gt) or (lte is not None and o > lte):
                if ordered and ((desc and gt is not None and o <= gt) or (not desc and lte is not None and o > lte)):
                    break
                continue
            results.append(stored_event_of(event, sid))
            if limit is not None and len(results) >= limit:
                break
        return results

    @staticmethod
    def _start_version(base: Optional[int], gt: Optional[int], lte: Optional[int], desc: bool) -> Optional[int]:
        if base is None:
            return None
        if desc:
            return None if lte is None else lte - base + 1
        return None if gt is None else max(1, gt - base + 2)

    def _pages(self, sid: str, start: Optional[int], desc: bool) -> Iterator[Body]:
        """The stream's events from `start` on (down, with `desc`), paged."""
        version = start
        while True:
            events = self._read_stream(sid, from_version=version, limit=PAGE, backwards=desc)
            yield from events
            if len(events) < PAGE:
                return
            last = int(events[-1]["version"])
            version = last - 1 if desc else last + 1
            if version < 1:
                return


class EventfoldApplicationRecorder(EventfoldAggregateRecorder, ApplicationRecorder):
    """Also the application sequence: notification ids are global positions."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Optional[Sequence[int]]:
        return self._insert(stored_events, kwargs.get("tracking"))

    def select_notifications(
        self,
        start: Optional[int],
        limit: int,
        stop: Optional[int] = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        position = 1 if start is None else (start if inclusive_of_start else start + 1)
        position = max(position, 1)
        results: List[Notification] = []
        while len(results) < limit and (stop is None or position <= stop):
            want = min(PAGE, limit - len(results))
            body: Body = {"type": "read_all", "from_sequence": position, "limit": want}
            if stop is not None:
                body["to_sequence"] = stop
            if topics:
                body["event_types"] = list(topics)
            try:
                events: List[Body] = self.pool.request(body).get("events", [])
            except EventfoldError as e:
                raise translate(e) from e
            results.extend(notification_of(e) for e in events if not is_hidden(e["aggregate_id"]))
            if len(events) < want:
                break
            position = int(events[-1]["sequence_number"]) + 1
        return results

    def max_notification_id(self) -> Optional[int]:
        try:
            head = int(self.pool.request({"type": "read_all", "backwards": True, "limit": 1}).get("head", 0))
        except EventfoldError as e:
            raise translate(e) from e
        return head or None

    def subscribe(self, gt: Optional[int] = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return EventfoldSubscription(self, gt=gt, topics=topics)


class EventfoldSubscription(Subscription[EventfoldApplicationRecorder]):
    """Notifications pushed by a node subscription on a connection of its
    own: catch-up from `gt`, then live, with no polling."""

    def __init__(self, recorder: EventfoldApplicationRecorder, gt: Optional[int] = None, topics: Sequence[str] = ()) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._client = recorder.pool.connect()
        self._client._sock.settimeout(None)  # waits for the next commit, however long
        options: Body = {"from_sequence": (gt or 0) + 1}
        if topics:
            options["event_types"] = list(topics)
        try:
            self._events = iter(self._client.subscribe(**options))
        except EventfoldError as e:
            self._client.close()
            raise translate(e) from e

    def __next__(self) -> Notification:
        while True:
            if self._has_been_stopped:
                raise StopIteration
            try:
                event = next(self._events)
            except (EventfoldError, OSError, ValueError) as e:
                if self._has_been_stopped:
                    raise StopIteration from None
                raise OperationalError(f"eventfold subscription failed: {e}") from e
            if not is_hidden(event["aggregate_id"]):
                n = notification_of(event)
                self._last_notification_id = n.id
                return n

    def stop(self) -> None:
        super().stop()
        try:
            self._client._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked reader
        except OSError:
            pass
        self._client.close()


class EventfoldTrackingRecorder(TrackingRecorder):
    """Tracking records as durable consumer checkpoints (application name =
    consumer name). A checkpoint is a position of this node's log, so a
    notification id past the node's head is refused (see README.md)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def insert_tracking(self, tracking: Tracking) -> None:
        checkpoint = {"consumer": tracking.application_name, "position": tracking.notification_id}
        try:
            self.pool.request({"type": "append_many", "streams": [], "checkpoint": checkpoint})
        except EventfoldError as e:
            raise translate(e) from e

    def max_tracking_id(self, application_name: str) -> Optional[int]:
        try:
            position = int(self.pool.request({"type": "get_checkpoint", "consumer": application_name})["position"])
        except EventfoldError as e:
            raise translate(e) from e
        return position or None


class EventfoldProcessRecorder(EventfoldTrackingRecorder, EventfoldApplicationRecorder, ProcessRecorder):
    """Events and their tracking record in one commit."""

    def __init__(self, pool: ConnectionPool) -> None:
        EventfoldApplicationRecorder.__init__(self, pool)


class EventfoldFactory(InfrastructureFactory[EventfoldTrackingRecorder]):
    """`PERSISTENCE_MODULE=eventfold_eventsourcing`: recorders on one node."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.pool = ConnectionPool.from_env(self.env)

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return EventfoldAggregateRecorder(self.pool, snapshots=purpose == "snapshots")

    def application_recorder(self) -> ApplicationRecorder:
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        cls: Type[EventfoldApplicationRecorder] = resolve_topic(topic) if topic else EventfoldApplicationRecorder
        return cls(self.pool)

    def tracking_recorder(
        self, tracking_recorder_class: Optional[Type[EventfoldTrackingRecorder]] = None
    ) -> EventfoldTrackingRecorder:
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            tracking_recorder_class = resolve_topic(topic) if topic else EventfoldTrackingRecorder
        assert tracking_recorder_class is not None
        return tracking_recorder_class(self.pool)

    def process_recorder(self) -> ProcessRecorder:
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        cls: Type[EventfoldProcessRecorder] = resolve_topic(topic) if topic else EventfoldProcessRecorder
        return cls(self.pool)

    def close(self) -> None:
        self.pool.close()


Factory = EventfoldFactory
