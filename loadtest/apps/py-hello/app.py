"""The Python hello of the benchmark harness: what examples/hello answers."""

from outpost import Response


def on_fetch(request, env):
    agent = request.headers.get("user-agent", "")
    return Response(f"hello from outpost\npath: {request.path}\nuser-agent: {agent}\n")
