"""The handler error: an HTTP status with a message, so raising one answers the request."""


class OutpostError(Exception):
    """Raise to answer with ``status`` and ``message`` (text/plain) and any extra ``headers``.

    KV calls raise it too: 503 with Retry-After while the origin cannot take writes, 429 with
    Retry-After for an app over its KV write rate, 413 for a key, value or metadata over its
    limit, 500 for anything else.
    """

    def __init__(self, message: str, status: int = 500, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = dict(headers or {})
