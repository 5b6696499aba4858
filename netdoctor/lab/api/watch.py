"""Watch support: a bounded history of store events and blocking per-request event streams.

The server creates one WatchHub per store and serves `?watch=true` from `stream()`. resourceVersion
semantics follow the real server: unset or "0" starts with synthetic ADDED events for the current
objects; a version resumes after it; a version older than the history gives a 410 Expired event.
With allowWatchBookmarks, a quiet stream gets a BOOKMARK (only the resourceVersion it has reached)
every minute and two seconds before it times out, so a client's next watch resumes from there.
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
BOOKMARK_EVERY = 60.0  # seconds between bookmarks, as the real server's watch cache
BOOKMARK_BEFORE_END = 2.0  # and one this long before the watch's timeout


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
               resource_version: str | None, deadline: float,
               bookmark: Callable[[int], dict] | None = None) -> Iterator[dict]:
        """Watch events ({"type", "object"}) until the deadline passes or the hub closes;
        `bookmark(version)` makes a BOOKMARK's object (None: the client did not ask for them).

        Raises ApiError 400 at once for a malformed resourceVersion, before any event.
        """
        if resource_version in (None, "", "0"):
            items, version = self._store.snapshot(resource, namespace)
            initial = [{"type": "ADDED", "object": o} for o in items if match(o)]
            return self._chain(initial, resource, namespace, match, int(version), deadline, bookmark)
        cursor = _parse_version(resource_version)
        if cursor < self._oldest:
            return iter([{"type": "ERROR", "object": _expired(cursor, self._oldest).status()}])
        return self._follow(resource, namespace, match, cursor, deadline, bookmark)

    def _chain(self, initial: list[dict], *follow_args) -> Iterator[dict]:
        yield from initial
        yield from self._follow(*follow_args)

    def _follow(self, resource: str, namespace: str | None, match: Callable[[dict], bool], cursor: int,
                deadline: float, bookmark: Callable[[int], dict] | None = None) -> Iterator[dict]:
        due = _next_bookmark(time.monotonic(), deadline) if bookmark else float("inf")
        while True:
            with self._changed:
                while (not self._closed and not self._newer(cursor) and time.monotonic() < min(deadline, due)):
                    self._changed.wait(min(_POLL, max(0.0, min(deadline, due) - time.monotonic())))
                if self._closed or time.monotonic() >= deadline:
                    return
                batch = [e for e in self._events if e[0] > cursor]
            for version, event, kind, obj in batch:
                cursor = version
                if kind == resource and (namespace is None or obj["metadata"].get("namespace") == namespace) and match(obj):
                    yield {"type": event, "object": obj}
            if bookmark and time.monotonic() >= due:
                yield {"type": "BOOKMARK", "object": bookmark(cursor)}
                due = _next_bookmark(time.monotonic(), deadline)

    def _newer(self, cursor: int) -> bool:
        return bool(self._events) and self._events[-1][0] > cursor

    def _record(self, event: str, resource: str, obj: dict) -> None:
        with self._changed:
            if len(self._events) == self._events.maxlen:
                self._oldest = self._events[0][0]
            self._events.append((int(obj["metadata"]["resourceVersion"]), event, resource, obj))
            self._changed.notify_all()


def _next_bookmark(now: float, deadline: float) -> float:
    """A minute from now, or just before the deadline if that comes first (and is still ahead)."""
    before_end = deadline - BOOKMARK_BEFORE_END
    return before_end if now < before_end < now + BOOKMARK_EVERY else now + BOOKMARK_EVERY


def _parse_version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f'invalid resource version "{text}"') from None


def _expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, f"too old resource version: {requested} ({oldest})", reason="Expired")
