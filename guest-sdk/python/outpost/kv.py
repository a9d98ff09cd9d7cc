"""The edge KV, over wasi:keyvalue (and outpost:kv/extras for what the proposal lacks).

A handler opens only the namespaces its app lists in ``[kv] namespaces``. Reads come from the
node's replica; writes return once the origin has them, and this node reads its own writes at
once. ``increment`` and ``compare_and_swap`` are decided at the origin, so no update made at
another location is lost.
"""

import json as _json
import time

from componentize_py_types import Err
from wit_world.imports import atomics, batch, extras, wasi_keyvalue_store as store

from .errors import OutpostError


def _kv_error(err: Err, namespace: str) -> OutpostError:
    code = err.value
    if isinstance(code, store.Error_AccessDenied):
        return OutpostError(
            f"KV namespace {namespace!r} is not bound to this app "
            "(add it to [kv] namespaces in outpost.toml)"
        )
    if isinstance(code, store.Error_NoSuchStore):
        return OutpostError(f"no KV namespace {namespace!r}")
    message = str(getattr(code, "value", code))
    if message.startswith("unavailable: "):
        return OutpostError(
            f"the KV store cannot take writes right now: {message[len('unavailable: '):]}",
            503,
            {"retry-after": "1"},
        )
    if message.startswith("rate-limited: "):
        return OutpostError(
            f"too many KV writes: {message[len('rate-limited: '):]}",
            429,
            {"retry-after": "1"},
        )
    if message.startswith("limit: "):
        return OutpostError(message[len("limit: ") :], 413)
    return OutpostError(f"KV error: {message}")


def _to_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("KV values are str or bytes (serialize others, e.g. with json.dumps)")


def _decode(data: bytes, type: str):
    if type == "text":
        return data.decode("utf-8")
    if type == "json":
        return _json.loads(data)
    if type == "bytes":
        return data
    raise ValueError(f'unknown KV value type {type!r}: use "text", "json" or "bytes"')


def _decode_metadata(data: bytes | None):
    if data is None:
        return None
    text = data.decode("utf-8", errors="replace")
    try:
        return _json.loads(text)
    except ValueError:
        return text


class KVNamespace:
    """One KV namespace, with the Workers KV operations and Outpost's atomic ones."""

    def __init__(self, name: str):
        self.name = name
        self._bucket = None

    def _call(self, operation):
        try:
            if self._bucket is None:
                self._bucket = store.open(self.name)
            return operation(self._bucket)
        except Err as err:
            raise _kv_error(err, self.name) from None

    def get(self, key: str, type: str = "text"):
        """The value at ``key`` as "text" (the default), "json" or "bytes"; None if absent."""
        data = self._call(lambda bucket: bucket.get(key))
        return None if data is None else _decode(data, type)

    def get_many(self, keys: list[str], type: str = "text") -> dict:
        """A dict from each key to its value, or None where absent."""
        found = self._call(lambda bucket: batch.get_many(bucket, list(keys)))
        return {
            key: (None if pair is None else _decode(pair[1], type)) for key, pair in zip(keys, found)
        }

    def get_with_metadata(self, key: str, type: str = "text"):
        """``(value, metadata)``, both None if the key is absent."""
        entry = self._call(lambda bucket: extras.get_entry(bucket, key))
        if entry is None:
            return None, None
        return _decode(entry.value, type), _decode_metadata(entry.metadata)

    def put(self, key: str, value, expiration_ttl: int | None = None, expiration: int | None = None,
            metadata=None) -> None:
        """Store ``value`` (str or bytes). ``expiration_ttl`` is seconds from now,
        ``expiration`` Unix seconds; ``metadata`` is anything JSON can hold (up to 1 KiB)."""
        data = _to_bytes(value)
        ttl = None
        if expiration_ttl is not None:
            ttl = max(1, int(expiration_ttl))
        elif expiration is not None:
            ttl = max(1, int(expiration - time.time()))
        meta = None if metadata is None else _json.dumps(metadata).encode()
        if ttl is None and meta is None:
            self._call(lambda bucket: bucket.set(key, data))
        else:
            self._call(lambda bucket: extras.set_with_options(bucket, key, data, meta, ttl))

    def delete(self, key: str) -> None:
        self._call(lambda bucket: bucket.delete(key))

    def list(self, prefix: str = "", limit: int = 1000, cursor: str | None = None) -> dict:
        """Keys by prefix, in order: ``{"keys": [{"name": ...}], "list_complete": bool,
        "cursor": ...}`` (pass the cursor back for the next page)."""
        limit = min(max(1, int(limit)), 1000)
        keys, next_cursor = self._call(
            lambda bucket: extras.list_prefix(bucket, prefix, cursor, limit)
        )
        page = {"keys": [{"name": name} for name in keys], "list_complete": next_cursor is None}
        if next_cursor is not None:
            page["cursor"] = next_cursor
        return page

    def increment(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the counter at ``key`` (absent counts as 0); the new value."""
        return self._call(lambda bucket: atomics.increment(bucket, key, int(delta)))

    def compare_and_swap(self, key: str, expected, value) -> bool:
        """Set ``value`` only if the current value is ``expected`` (None: only if absent)."""
        want = None if expected is None else _to_bytes(expected)
        data = _to_bytes(value)
        return self._call(lambda bucket: extras.compare_and_swap(bucket, key, want, data))

    def __repr__(self) -> str:
        return f"<KVNamespace {self.name}>"
