"""Requests, responses and outbound ``fetch``, over wasi:http."""

import json as _json
from urllib.parse import parse_qs, urlsplit

from . import _wasi
from .errors import OutpostError


class Headers:
    """HTTP header fields: names compare case-insensitively, a name may repeat."""

    def __init__(self, items=None):
        self._items: list[tuple[str, str]] = []
        if isinstance(items, Headers):
            items = items.items()
        elif isinstance(items, dict):
            items = items.items()
        for name, value in items or ():
            self.append(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        wanted = name.lower()
        for key, value in self._items:
            if key == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._items if key == wanted]

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``."""
        self.delete(name)
        self.append(name, value)

    def append(self, name: str, value) -> None:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        self._items.append((str(name).lower(), str(value)))

    def delete(self, name: str) -> None:
        wanted = name.lower()
        self._items = [(key, value) for key, value in self._items if key != wanted]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self):
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _node_header(name: str, doc: str) -> property:
    """A read-only property: the value of the request header ``name`` the node sets."""
    return property(lambda request: request.headers.get(name), doc=doc)


class Request:
    """An HTTP request: the one a handler receives, or one to ``fetch``."""

    def __init__(self, url: str, method: str = "GET", headers=None, body: bytes | str = b""):
        self.url = url
        self.method = method.upper()
        self.headers = Headers(headers)
        self.body = body.encode() if isinstance(body, str) else bytes(body)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, percent-decoded; the first value of each name."""
        return {name: values[0] for name, values in parse_qs(urlsplit(self.url).query).items()}

    # What the node says of the request, from the headers it sets (replacing any the client
    # sent); None on a request built to fetch.
    client_ip = _node_header(
        "outpost-client-ip",
        "The client's address (behind the operator's trusted proxies, the one they forwarded).",
    )
    protocol = _node_header("outpost-protocol", "``HTTP/1.1``, ``HTTP/2`` or ``HTTP/3``.")
    tls_version = _node_header(
        "outpost-tls-version", "``TLSv1.3`` or ``TLSv1.2``; None over plain HTTP."
    )
    node = _node_header("outpost-node", "The name of the node serving the request.")
    region = _node_header("outpost-region", "The region the operator gave the node, if any.")
    request_id = _node_header(
        "outpost-request-id",
        "The request's id, as the node's access log and ``outpost tail`` show it.",
    )
    trigger = _node_header(
        "outpost-trigger",
        "For a request one of the app's cron triggers sent, its schedule; None for a client's.",
    )

    @property
    def scheduled_time(self) -> int | None:
        """For a trigger's request, when its tick was due, in ms since the Unix epoch."""
        value = self.headers.get("outpost-scheduled-time")
        return int(value) if value is not None and value.isdigit() else None

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        try:
            return _json.loads(self.body)
        except ValueError as err:
            raise OutpostError(f"the request body is not JSON: {err}", 400) from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class Response:
    """An HTTP response. ``body`` may be bytes or text (sent as UTF-8)."""

    def __init__(self, body: bytes | str = b"", status: int = 200, headers=None):
        self.status = int(status)
        self.headers = Headers(headers)
        if isinstance(body, str):
            body = body.encode("utf-8")
            if "content-type" not in self.headers:
                self.headers.set("content-type", "text/plain; charset=utf-8")
        self.body = bytes(body)

    @classmethod
    def json(cls, value, status: int = 200, headers=None) -> "Response":
        response = cls(_json.dumps(value).encode(), status, headers)
        if "content-type" not in response.headers:
            response.headers.set("content-type", "application/json")
        return response

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> "Response":
        return cls(b"", status, {"location": location})

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json_body(self):
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def fetch(
    url: "str | Request",
    method: str = "GET",
    headers=None,
    body: bytes | str = b"",
    timeout: float | None = None,
) -> Response:
    """Send a request to an origin in the app's ``[outbound] allow`` list and return the whole
    response. A refused or failed request raises OutpostError (502; the message says whether the
    allow-list or the node's policy denied it). ``timeout`` (seconds) bounds connecting and each wait for
    bytes."""
    request = url if isinstance(url, Request) else Request(url, method, headers, body)
    return _wasi.send(request, timeout)
