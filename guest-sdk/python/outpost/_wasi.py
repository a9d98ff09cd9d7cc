"""The wasi:http plumbing under the SDK: reading and writing bodies, converting requests and
responses, and sending an outbound request. Bindings come from componentize-py's ``wit_world``,
generated for the world ``outpost build`` writes for the app (node/src/cli/build/world.rs)."""

from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler, types
from wit_world.imports.streams import StreamError_Closed

from .errors import OutpostError

# wasi:io's blocking-write-and-flush takes at most 4096 bytes a call.
WRITE_CHUNK = 4096
READ_CHUNK = 64 * 1024

_METHODS = {
    "GET": types.Method_Get,
    "HEAD": types.Method_Head,
    "POST": types.Method_Post,
    "PUT": types.Method_Put,
    "DELETE": types.Method_Delete,
    "CONNECT": types.Method_Connect,
    "OPTIONS": types.Method_Options,
    "TRACE": types.Method_Trace,
    "PATCH": types.Method_Patch,
}


def method_name(method) -> str:
    if isinstance(method, types.Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()


def wasi_method(name: str):
    known = _METHODS.get(name.upper())
    return known() if known is not None else types.Method_Other(name)


def read_body(body) -> bytes:
    """All of an incoming body, then finish it."""
    stream = body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(READ_CHUNK))
        except Err as err:
            if isinstance(err.value, StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    types.IncomingBody.finish(body).__exit__(None, None, None)
    return b"".join(chunks)


def write_body(body, data: bytes) -> None:
    """Write all of ``data`` to an outgoing body and finish it."""
    stream = body.write()
    for start in range(0, len(data), WRITE_CHUNK):
        stream.blocking_write_and_flush(data[start : start + WRITE_CHUNK])
    stream.__exit__(None, None, None)
    types.OutgoingBody.finish(body, None)


def fields(headers) -> "types.Fields":
    return types.Fields.from_list([(name, value.encode("latin-1")) for name, value in headers])


def header_items(wasi_fields) -> list[tuple[str, str]]:
    return [(name, value.decode("latin-1")) for name, value in wasi_fields.entries()]


def incoming_request(request):
    """The handler's request as an SDK Request, body read."""
    from .http import Request

    scheme = request.scheme()
    if isinstance(scheme, types.Scheme_Https) or scheme is None:
        scheme_text = "https"
    elif isinstance(scheme, types.Scheme_Http):
        scheme_text = "http"
    else:
        scheme_text = scheme.value
    headers = header_items(request.headers())
    authority = request.authority() or next(
        (value for name, value in headers if name == "host"), "localhost"
    )
    url = f"{scheme_text}://{authority}{request.path_with_query() or '/'}"
    body = read_body(request.consume())
    return Request(url, method_name(request.method()), headers, body)


def send_response(response_out, response) -> None:
    """Answer with an SDK Response."""
    outgoing = types.OutgoingResponse(fields(response.headers))
    outgoing.set_status_code(response.status)
    body = outgoing.body()
    types.ResponseOutparam.set(response_out, Ok(outgoing))
    write_body(body, response.body)


def send_failure(response_out, message: str) -> None:
    """Tell the host the handler failed: wasi:http's internal-error, which the node answers
    with a 500 (the message in the log, and in the response under ``outpost dev``)."""
    types.ResponseOutparam.set(response_out, Err(types.ErrorCode_InternalError(message)))


def _error_text(code) -> str:
    name = type(code).__name__.removeprefix("ErrorCode_")
    value = getattr(code, "value", None)
    return f"{name}({value})" if value is not None else name


def send(request, timeout: float | None):
    """Send an SDK Request through wasi:http/outgoing-handler; the whole SDK Response."""
    from .http import Response

    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OutpostError(f"fetch needs an absolute http(s) URL, not {request.url!r}", 500)
    outgoing = types.OutgoingRequest(fields(request.headers))
    outgoing.set_method(wasi_method(request.method))
    outgoing.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
    outgoing.set_authority(parts.netloc)
    outgoing.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    options = None
    if timeout is not None:
        nanos = int(timeout * 1_000_000_000)
        options = types.RequestOptions()
        options.set_connect_timeout(nanos)
        options.set_first_byte_timeout(nanos)
        options.set_between_bytes_timeout(nanos)
    body = outgoing.body()
    try:
        future = outgoing_handler.handle(outgoing, options)
    except Err as err:
        raise _fetch_error(request, err.value) from None
    write_body(body, request.body)
    while True:
        result = future.get()
        if result is not None:
            break
        pollable = future.subscribe()
        pollable.block()
        pollable.__exit__(None, None, None)
    future.__exit__(None, None, None)
    if isinstance(result, Err) or isinstance(result.value, Err):
        code = result.value.value if isinstance(result, Ok) else None
        raise _fetch_error(request, code)
    incoming = result.value.value
    status = incoming.status()
    headers = header_items(incoming.headers())
    data = read_body(incoming.consume())
    incoming.__exit__(None, None, None)
    return Response(data, status, headers)


def _fetch_error(request, code) -> OutpostError:
    if isinstance(code, types.ErrorCode_HttpRequestDenied):
        return OutpostError(
            f"fetch {request.url}: denied (not in [outbound] allow, or the node's policy refuses it)",
            502,
        )
    reason = _error_text(code) if code is not None else "failed"
    return OutpostError(f"fetch {request.url}: {reason}", 502)
