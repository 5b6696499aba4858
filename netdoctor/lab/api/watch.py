"""Watch support: a bounded history of store events and blocking per-request event streams.

The server creates one WatchHub per store and serves `?watch=true` from `stream()`. resourceVersion
semantics follow the real server: unset or "0" starts with synthetic ADDED events for the current
objects; a version resumes after it; a version older than the history gives a 410 Expired event.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from netdoctor.lab.api.status import ApiError
from netdoctor.lab.api.store import Store

HISTORY = 20000
_POLL = 0.5  # how often a waiting stream rechecks its deadline and the hub's state


class WatchHub:
    def __init__(self, store: Store, history: int = HISTORY):
        self._store = store
        self._events: deque[tuple[int, str, str, dict]] = deque(maxlen=history)
        self._changed = threading.Condition()
        self._closed = False
        self._oldest = store.resource_version()
        store.subscribe(self._record)

    def close(self) -> None:
        """Ends every open stream."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def stream(self, resource: str, namespace: str | None, match: Callable[[dict], bool],
               resource_version: str | None, deadline: float) -> Iterator[dict]:
        """Watch events ({"type", "object"}) until the deadline passes or the hub closes.

        Raises ApiError 400 at once for a malformed resourceVersion, before any event.
        """
        if resource_version in (None, "", "0"):
            items, version = self._store.snapshot(resource, namespace)
            initial = [{"type": "ADDED", "object": o} for o in items if match(o)]
            return self._chain(initial, resource, namespace, match, int(version), deadline)
        cursor = _parse_version(resource_version)
        if cursor < self._oldest:
            return iter([{"type": "ERROR", "object": _expired(cursor, self._oldest).status()}])
        return self._follow(resource, namespace, match, cursor, deadline)

    def _chain(self, initial: list[dict], *follow_args) -> Iterator[dict]:
        yield from initial
        yield from self._follow(*follow_args)

    def _follow(self, resource: str, namespace: str | None, match: Callable[[dict], bool], cursor: int,
                deadline: float) -> Iterator[dict]:
        while True:
            with self._changed:
                while not self._closed and not self._newer(cursor) and time.monotonic() < deadline:
                    self._changed.wait(min(_POLL, max(0.0, deadline - time.monotonic())))
                if self._closed or time.monotonic() >= deadline:
                    return
                batch = [e for e in self._events if e[0] > cursor]
            for version, event, kind, obj in batch:
                cursor = version
                if kind == resource and (namespace is None or obj["metadata"].get("namespace") == namespace) and match(obj):
                    yield {"type": event, "object": obj}

    def _newer(self, cursor: int) -> bool:
        return bool(self._events) and self._events[-1][0] > cursor

    def _record(self, event: str, resource: str, obj: dict) -> None:
        with self._changed:
            if len(self._events) == self._events.maxlen:
                self._oldest = self._events[0][0]
            self._events.append((int(obj["metadata"]["resourceVersion"]), event, resource, obj))
            self._changed.notify_all()


def _parse_version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f'invalid resource version "{text}"') from None


def _expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, f"too old resource version: {requested} ({oldest})", reason="Expired")
