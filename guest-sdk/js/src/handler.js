// The wasi:http incoming handler written in JavaScript, for apps that reuse instances
// (`[instance] reuse = true`): StarlingMonkey's built-in fetch event serves one request per
// instance, so a reused instance is driven through this export instead. It turns the
// wasi:http request into a standard `Request`, calls the app, and streams the `Response` back;
// an exception becomes wasi:http's `internal-error`, which the node answers with a 500 (the
// message in the log, and in the response under `outpost dev`).

import {
  Fields,
  IncomingBody,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.10";

import { appHandler, errorResponse, makeEnv } from "./index.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const READ_CHUNK = 65536n;
// wasi:io's blocking-write-and-flush takes at most 4096 bytes a call.
const WRITE_CHUNK = 4096;

function methodName(method) {
  return method.tag === "other" ? method.val : method.tag.toUpperCase();
}

function schemeName(scheme) {
  if (scheme === undefined || scheme.tag === "HTTPS") {
    return "https";
  }
  return scheme.tag === "HTTP" ? "http" : scheme.val;
}

function isClosed(err) {
  return err && err.payload && err.payload.tag === "closed";
}

/// All of an incoming body (the node has already capped its size), then finish it.
function readBody(incomingBody) {
  const stream = incomingBody.stream();
  const chunks = [];
  let length = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(READ_CHUNK);
    } catch (err) {
      if (isClosed(err)) {
        break;
      }
      throw err;
    }
    chunks.push(chunk);
    length += chunk.length;
  }
  stream[Symbol.dispose]();
  const trailers = IncomingBody.finish(incomingBody);
  trailers[Symbol.dispose]();
  const body = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.length;
  }
  return body;
}

function toRequest(incoming) {
  const method = methodName(incoming.method());
  const headers = new Headers();
  let host = incoming.authority();
  for (const [name, value] of incoming.headers().entries()) {
    const text = decoder.decode(value);
    headers.append(name, text);
    if (host === undefined && name === "host") {
      host = text;
    }
  }
  const url = `${schemeName(incoming.scheme())}://${host ?? "localhost"}${incoming.pathWithQuery() ?? "/"}`;
  const body = readBody(incoming.consume());
  const init = { method, headers };
  if (method !== "GET" && method !== "HEAD") {
    init.body = body;
  }
  const request = new Request(url, init);
  // What the node says of the request (from the outpost-* headers it sets, replacing any the
  // client sent), where Workers puts it: `request.cf`.
  Object.defineProperty(request, "cf", { value: requestInfo(headers), enumerable: true });
  return request;
}

/// `request.cf`: the node's account of a request, named as Workers names what it has.
function requestInfo(headers) {
  const header = (name) => headers.get(name) ?? undefined;
  return Object.freeze({
    clientIp: header("outpost-client-ip"),
    httpProtocol: header("outpost-protocol"),
    tlsVersion: header("outpost-tls-version"),
    colo: header("outpost-region"),
    node: header("outpost-node"),
    requestId: header("outpost-request-id"),
  });
}

/// Stream `response` out through `responseOut`.
async function send(response, responseOut) {
  const fields = Fields.fromList(
    [...response.headers].map(([name, value]) => [name, encoder.encode(value)]),
  );
  const outgoing = new OutgoingResponse(fields);
  outgoing.setStatusCode(response.status);
  const body = outgoing.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: outgoing });
  const stream = body.write();
  if (response.body !== null) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      const bytes = typeof value === "string" ? encoder.encode(value) : value;
      for (let at = 0; at < bytes.length; at += WRITE_CHUNK) {
        stream.blockingWriteAndFlush(bytes.subarray(at, at + WRITE_CHUNK));
      }
    }
  }
  stream[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}

/// The `wasi:http/incoming-handler` export serving `app`, request after request.
export function incomingHandler(app, { kvNamespaces = [], KVNamespace } = {}) {
  const handler = appHandler(app);
  let env = null;
  return {
    async handle(incoming, responseOut) {
      const pending = [];
      const ctx = {
        waitUntil: (promise) => pending.push(promise),
        passThroughOnException: () => {},
      };
      let response;
      try {
        env ??= makeEnv(kvNamespaces, KVNamespace);
        response = await handler(toRequest(incoming), env, ctx);
        if (!(response instanceof Response)) {
          throw new TypeError(
            `fetch() must return a Response, not ${response === null ? "null" : typeof response}`,
          );
        }
      } catch (err) {
        response = errorResponse(err);
        if (response === null) {
          const message = err && err.stack ? `${err}\n${err.stack}` : String(err);
          console.error(`Uncaught ${message}`);
          ResponseOutparam.set(responseOut, {
            tag: "err",
            val: { tag: "internal-error", val: String(err) },
          });
          return;
        }
      }
      await send(response, responseOut);
      await Promise.allSettled(pending);
    },
  };
}
