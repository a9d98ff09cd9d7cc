// Errors that carry the HTTP status they become when a handler does not catch them.

/// A KV or handler failure that carries the HTTP status it should become when uncaught: 503
/// (with Retry-After) while the origin cannot take writes, 429 (with Retry-After) for an app
/// over its KV write rate, 413 for a key or value over its limit, 500 otherwise.
export class OutpostError extends Error {
  constructor(message, status = 500, headers = {}) {
    super(message);
    this.name = "OutpostError";
    this.status = status;
    this.headers = headers;
  }
}

/// The host's KV error (a wasi:keyvalue `error` variant) as an OutpostError. The node prefixes
/// `other` messages with what the guest should do about them.
export function kvError(err, namespace) {
  const payload = err && err.payload;
  if (!payload) {
    return err;
  }
  switch (payload.tag) {
    case "access-denied":
      return new OutpostError(
        `KV namespace ${JSON.stringify(namespace)} is not bound to this app (add it to [kv] namespaces in outpost.toml)`,
      );
    case "no-such-store":
      return new OutpostError(`no KV namespace ${JSON.stringify(namespace)}`);
    default: {
      const message = String(payload.val ?? payload.tag);
      if (message.startsWith("unavailable: ")) {
        return new OutpostError(
          `the KV store cannot take writes right now: ${message.slice(13)}`,
          503,
          { "retry-after": "1" },
        );
      }
      if (message.startsWith("rate-limited: ")) {
        return new OutpostError(
          `too many KV writes: ${message.slice(14)}`,
          429,
          { "retry-after": "1" },
        );
      }
      if (message.startsWith("limit: ")) {
        return new OutpostError(message.slice(7), 413);
      }
      return new OutpostError(`KV error: ${message}`);
    }
  }
}

