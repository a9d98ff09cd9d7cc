"""The wasi:http/incoming-handler export, around the app's ``fetch`` function.

``outpost build`` generates the module componentize-py starts from; it does::

    import app
    from outpost.serve import incoming_handler
    IncomingHandler = incoming_handler(app, kv_namespaces=[...])
"""

import asyncio
import inspect
import sys
import traceback

# Imported now, while the component is pre-initialized: nothing can be imported later.
from poll_loop import PollLoop
from wit_world import exports

from . import _wasi
from .env import Env
from .errors import OutpostError
from .http import Response


class ScheduledEvent:
    """What ``on_scheduled`` gets for one tick of a cron trigger, as Workers' ``event``."""

    def __init__(self, cron: str, scheduled_time: int | None):
        self.type = "scheduled"
        self.cron = cron
        self.scheduled_time = scheduled_time


def _entry_point(app):
    """``on_fetch`` (as in Cloudflare's Python Workers), else a ``fetch`` the module defines
    itself (not ``outpost.fetch`` imported into it); None if it has neither."""
    function = getattr(app, "on_fetch", None)
    if callable(function):
        return function
    function = getattr(app, "fetch", None)
    if callable(function) and getattr(function, "__module__", None) == app.__name__:
        return function
    return None


def _handler(app):
    """The function answering each request: ``on_fetch``, and for a request one of the app's
    cron triggers sent (marked by the node with ``outpost-trigger``, which no client can
    send), ``on_scheduled(event, env)``, answered 204 once it returns."""
    fetch = _entry_point(app)
    scheduled = getattr(app, "on_scheduled", None)
    if not callable(scheduled):
        scheduled = None
    if fetch is None and scheduled is None:
        raise TypeError(
            f"the app module {app.__name__!r} must define `def on_fetch(request, env)`"
        )

    def handle(request, env):
        if request.trigger is not None and scheduled is not None:
            _call(scheduled, ScheduledEvent(request.trigger, request.scheduled_time), env)
            return Response(b"", 204)
        if fetch is None:
            return Response("this app answers its cron triggers only\n", 404)
        return _call(fetch, request, env)

    return handle


def _call(function, request, env):
    parameters = len(inspect.signature(function).parameters)
    result = function(request, env) if parameters >= 2 else function(request)
    if inspect.isawaitable(result):
        loop = PollLoop()
        asyncio.set_event_loop(loop)
        try:
            result = loop.run_until_complete(result)
        finally:
            asyncio.set_event_loop(None)
    return result


def incoming_handler(app, kv_namespaces=()):
    """The class componentize-py exports as wasi:http/incoming-handler, serving ``app``."""
    handle_request = _handler(app)
    namespaces = list(kv_namespaces)

    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request, response_out) -> None:
            try:
                sdk_request = _wasi.incoming_request(request)
                response = handle_request(sdk_request, Env(namespaces))
                if isinstance(response, (str, bytes)):
                    response = Response(response)
                if not isinstance(response, Response):
                    raise TypeError(
                        f"fetch() must return an outpost.Response, not {type(response).__name__}"
                    )
            except OutpostError as err:
                response = Response(f"{err.message}\n", err.status, err.headers)
            except Exception as err:  # noqa: BLE001 - every failure is reported, none lost
                print(f"Uncaught {traceback.format_exc()}", file=sys.stderr, end="")
                _wasi.send_failure(response_out, f"{type(err).__name__}: {err}")
                return
            _wasi.send_response(response_out, response)

    return IncomingHandler
