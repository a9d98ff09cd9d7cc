"""A JSON API for items, on the edge KV, in Python.

| request               | does                                                       |
| --------------------- | ---------------------------------------------------------- |
| GET /items            | lists items (``?prefix=`` on their ids)                    |
| POST /items           | creates one from a JSON object with a "name": 201 + Location |
| GET /items/ID         | one item, read from this node's replica                    |
| PUT /items/ID         | replaces it                                                |
| DELETE /items/ID      | deletes it                                                 |
| GET /items/ID/votes   | its vote count; POST adds one (decided at the origin)      |
| GET /config           | the app's config values                                    |
| GET /whoami           | what the node says of the request: client address, protocol, node |
| GET /upstream         | fetches the UPSTREAM config URL (if [outbound] allows it)  |
| GET /fib?n=N          | the Nth Fibonacci number, the slow way: CPU work bounded by limits.cpu_ms |

``on_scheduled`` runs on each tick of the app's cron trigger (``[[triggers]]`` in outpost.toml):
it counts the runs as the votes of the item ``cron`` (GET /items/cron/votes).
"""

import json
import uuid

from outpost import OutpostError, Response, fetch

PREFIX = "item/"


def on_fetch(request, env):
    parts = [p for p in request.path.split("/") if p]
    method = request.method
    if parts == ["items"]:
        if method == "GET":
            return list_items(env, request.query.get("prefix", ""))
        if method == "POST":
            item = validated(request.json())
            item_id = uuid.uuid4().hex[:12]
            env.KV.put(PREFIX + item_id, to_json(item))
            return Response.json(
                {"id": item_id, **item}, status=201, headers={"location": f"/items/{item_id}"}
            )
        return not_allowed("GET, POST")
    if len(parts) == 2 and parts[0] == "items":
        return item_route(env, method, parts[1], request)
    if len(parts) == 3 and parts[0] == "items" and parts[2] == "votes":
        key = f"votes/{parts[1]}"
        if method == "POST":
            return Response.json({"id": parts[1], "votes": env.KV.increment(key)})
        return Response.json({"id": parts[1], "votes": int(env.KV.get(key) or 0)})
    if parts == ["config"]:
        return Response.json(env.vars)
    if parts == ["whoami"]:
        return Response.json(
            {"client_ip": request.client_ip, "protocol": request.protocol, "node": request.node}
        )
    if parts == ["upstream"]:
        upstream = fetch(env.vars["UPSTREAM"])
        return Response(upstream.body, upstream.status, {"x-upstream": env.vars["UPSTREAM"]})
    if parts == ["fib"]:
        n = int(request.query.get("n", "20"))
        return Response.json({"n": n, "fib": fib(n)})
    raise OutpostError(f"no route for {method} {request.path}", 404)


def on_scheduled(event, env):
    env.KV.increment("votes/cron")
    print(f"cron {event.cron} ran for {event.scheduled_time}")


def item_route(env, method, item_id, request):
    key = PREFIX + item_id
    if method == "GET":
        value = env.KV.get(key, type="json")
        if value is None:
            raise OutpostError(f"no item {item_id}", 404)
        return Response.json({"id": item_id, **value})
    if method == "PUT":
        env.KV.put(key, to_json(validated(request.json())))
        return Response.json({"id": item_id, **request.json()})
    if method == "DELETE":
        env.KV.delete(key)
        return Response(b"", status=204)
    return not_allowed("GET, PUT, DELETE")


def list_items(env, prefix):
    ids, cursor = [], None
    while True:
        page = env.KV.list(prefix=PREFIX + prefix, cursor=cursor)
        ids.extend(key["name"][len(PREFIX):] for key in page["keys"])
        if page["list_complete"]:
            return Response.json(ids)
        cursor = page["cursor"]


def validated(item):
    # A body that is JSON but not an object fails here: an uncaught exception, answered 500.
    name = item["name"]
    if not isinstance(name, str) or not name:
        raise OutpostError('"name" must be a non-empty string', 400)
    return {"name": name, **{k: v for k, v in item.items() if k != "name"}}


def to_json(value):
    return json.dumps(value)


def not_allowed(allow):
    return Response(f"use {allow}\n", status=405, headers={"allow": allow})


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
