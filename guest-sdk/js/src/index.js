// Outpost handlers in JavaScript, in the shape of Cloudflare Workers:
//
//   export default {
//     async fetch(request, env, ctx) {
//       const views = await env.KV.get("views");
//       return new Response(`hello from ${env.vars.GREETING}`);
//     },
//   };
//
// `outpost build` bundles the app's module with this one and calls `serve` with the app's
// default export; nothing here is a new host interface. `Request`, `Response`, `fetch`, streams,
// `URL`, `crypto` and `console` are the engine's own (StarlingMonkey, through componentize-js),
// speaking wasi:http. `env` holds the app's `[config]` values (`env.vars.NAME`, and `env.NAME`
// as in Workers) and one KV namespace object per `[kv] namespaces` entry (`env.NAME`, and
// `env.KV` for the first), over wasi:keyvalue and outpost:kv/extras (see kv.js, which the
// build passes in only for apps that bind namespaces).

import { getAll as configValues } from "wasi:config/store@0.2.0-rc.1";

import { OutpostError } from "./errors.js";

export { OutpostError };

/// The `env` a handler gets: config values and KV namespaces, read when first touched (the
/// module's top level runs once, at build time, when no request and no config exist yet).
export function makeEnv(namespaces, KVNamespace) {
  const vars = Object.freeze(Object.fromEntries(configValues()));
  const env = { vars };
  for (const [name, value] of Object.entries(vars)) {
    env[name] = value;
  }
  for (const name of namespaces) {
    env[name] = new KVNamespace(name);
  }
  if (namespaces.length > 0 && !("KV" in env)) {
    env.KV = env[namespaces[0]];
  }
  return Object.freeze(env);
}

/// The response an OutpostError asks for; null for any other exception.
export function errorResponse(err) {
  if (err instanceof OutpostError) {
    return new Response(`${err.message}\n`, {
      status: err.status,
      headers: { "content-type": "text/plain; charset=utf-8", ...err.headers },
    });
  }
  return null;
}

/// The function that answers each request for `app`: its `fetch(request, env, ctx)` (or `app`
/// itself, a function of that shape), and for a request one of its cron triggers sent (marked
/// by the node with `outpost-trigger`, which no client can send), its `scheduled(event, env,
/// ctx)` as Workers calls it, with `event.cron` and `event.scheduledTime` (ms); that request is
/// answered 204 once `scheduled` is done. An app may have either or both.
export function appHandler(app) {
  const fetch = typeof app === "function" ? app : app && app.fetch && app.fetch.bind(app);
  const scheduled = app && typeof app.scheduled === "function" && app.scheduled.bind(app);
  if (typeof fetch !== "function" && !scheduled) {
    throw new TypeError(
      "the app's module must `export default { async fetch(request, env, ctx) { ... } }`",
    );
  }
  return async (request, env, ctx) => {
    const cron = request.headers.get("outpost-trigger");
    if (cron !== null && scheduled) {
      const scheduledTime = Number(request.headers.get("outpost-scheduled-time"));
      await scheduled({ type: "scheduled", cron, scheduledTime }, env, ctx);
      return new Response(null, { status: 204 });
    }
    if (typeof fetch !== "function") {
      return new Response("this app answers its cron triggers only\n", { status: 404 });
    }
    return fetch(request, env, ctx);
  };
}

/// Serve `app` (an object with `fetch(request, env, ctx)`, or a function of the same shape) on
/// the engine's fetch event. An OutpostError that reaches here becomes its status; the engine
/// logs any other exception with its stack (to stderr: the node's log) and answers 500.
/// Without an app, the module is taken to have added its own fetch listener (Service Worker
/// syntax).
export function serve(app, { kvNamespaces = [], KVNamespace } = {}) {
  if (app === undefined || app === null) {
    return;
  }
  const handler = appHandler(app);
  let env = null;
  addEventListener("fetch", (event) => {
    const ctx = {
      waitUntil: (promise) => event.waitUntil(promise),
      passThroughOnException: () => {},
    };
    event.respondWith(
      (async () => {
        try {
          env ??= makeEnv(kvNamespaces, KVNamespace);
          const response = await handler(event.request, env, ctx);
          if (!(response instanceof Response)) {
            throw new TypeError(
              `fetch() must return a Response, not ${response === null ? "null" : typeof response}`,
            );
          }
          return response;
        } catch (err) {
          const known = errorResponse(err);
          if (known !== null) {
            return known;
          }
          throw err;
        }
      })(),
    );
  });
}
