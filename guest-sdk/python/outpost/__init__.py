"""Outpost handlers in Python.

An app is a module with an ``on_fetch`` function, as in Cloudflare's Python Workers (a ``fetch``
function of the module's own is accepted too). It takes the request and the app's environment
and returns a response; it may be ``async``::

    from outpost import Response

    def on_fetch(request, env):
        views = env.KV.increment("views")
        return Response.json({"path": request.path, "views": views})

``outpost build`` compiles it with componentize-py. Everything here speaks the same standard
interfaces as the Rust and JavaScript SDKs: wasi:http for requests, responses and ``fetch``,
wasi:keyvalue and outpost:kv/extras for the KV, wasi:config for ``env.vars``; ``print`` and
``logging`` go to stdout and stderr, which become the node's log lines for the request.
"""

from .env import Env
from .errors import OutpostError
from .http import Headers, Request, Response, fetch


def __getattr__(name):
    # The KV bindings exist only in apps that bind KV namespaces (their world has the KV
    # interfaces); `outpost build` imports the KV module for those while the component is
    # pre-initialized.
    if name == "KVNamespace":
        from .kv import KVNamespace

        return KVNamespace
    raise AttributeError(f"module 'outpost' has no attribute {name!r}")

__all__ = [
    "Env",
    "Headers",
    "KVNamespace",
    "OutpostError",
    "Request",
    "Response",
    "fetch",
]
