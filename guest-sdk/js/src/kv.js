// KV namespaces for handlers: the Workers KV API over wasi:keyvalue and outpost:kv/extras.
// Only apps that bind KV namespaces import this module (their world has these interfaces).

import { open } from "wasi:keyvalue/store@0.2.0-draft";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft";
import { getMany } from "wasi:keyvalue/batch@0.2.0-draft";
import {
  compareAndSwap,
  getEntry,
  listPrefix,
  setWithOptions,
} from "outpost:kv/extras@0.1.0";

import { kvError } from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function toBytes(value) {
  if (typeof value === "string") {
    return encoder.encode(value);
  }
  if (value instanceof Uint8Array) {
    return value;
  }
  if (value instanceof ArrayBuffer) {
    return new Uint8Array(value);
  }
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (value instanceof ReadableStream || value instanceof Blob) {
    return new Uint8Array(await new Response(value).arrayBuffer());
  }
  throw new TypeError(
    "KV values are strings, ArrayBuffers, typed arrays, Blobs or ReadableStreams",
  );
}

function decode(bytes, type) {
  switch (type) {
    case "text":
      return decoder.decode(bytes);
    case "json":
      return JSON.parse(decoder.decode(bytes));
    case "arrayBuffer":
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    case "stream":
      return new Response(bytes).body;
    default:
      throw new TypeError(
        `unknown KV value type ${JSON.stringify(type)}: use "text", "json", "arrayBuffer" or "stream"`,
      );
  }
}

function valueType(options) {
  if (options === undefined || options === null) {
    return "text";
  }
  return typeof options === "string" ? options : (options.type ?? "text");
}

/// Metadata is stored as bytes; Workers stores JSON, so JSON goes in and comes out, and bytes
/// that are not JSON come back as text.
function decodeMetadata(bytes) {
  if (bytes === undefined) {
    return null;
  }
  const text = decoder.decode(bytes);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function ttlSeconds(options) {
  if (options.expirationTtl !== undefined) {
    return BigInt(Math.max(1, Math.ceil(Number(options.expirationTtl))));
  }
  if (options.expiration !== undefined) {
    const remaining = Number(options.expiration) - Date.now() / 1000;
    return BigInt(Math.max(1, Math.ceil(remaining)));
  }
  return undefined;
}

/// One KV namespace, with the Workers KV methods (get, getWithMetadata, put, delete, list) and
/// the two Outpost adds, decided at the origin so no update is lost: increment and
/// compareAndSwap. Reads come from the node's replica; writes resolve once the origin has
/// them, and this node reads its own writes at once.
export class KVNamespace {
  #name;
  #bucket = null;

  constructor(name) {
    this.#name = name;
  }

  get name() {
    return this.#name;
  }

  #call(operation) {
    try {
      if (this.#bucket === null) {
        this.#bucket = open(this.#name);
      }
      return operation(this.#bucket);
    } catch (err) {
      throw kvError(err, this.#name);
    }
  }

  /// The value at `key` (null if absent) as "text" (the default), "json", "arrayBuffer" or
  /// "stream"; with an array of keys, a Map from each key to its value or null.
  async get(key, options) {
    const type = valueType(options);
    if (Array.isArray(key)) {
      const found = this.#call((bucket) => getMany(bucket, key));
      return new Map(
        key.map((k, i) => [k, found[i] === undefined ? null : decode(found[i][1], type)]),
      );
    }
    const bytes = this.#call((bucket) => bucket.get(String(key)));
    return bytes === undefined ? null : decode(bytes, type);
  }

  /// `{ value, metadata }` (both null if the key is absent).
  async getWithMetadata(key, options) {
    const type = valueType(options);
    const entry = this.#call((bucket) => getEntry(bucket, String(key)));
    if (entry === undefined) {
      return { value: null, metadata: null, cacheStatus: null };
    }
    return {
      value: decode(entry.value, type),
      metadata: decodeMetadata(entry.metadata),
      cacheStatus: null,
    };
  }

  /// Store `value` (string, ArrayBuffer, typed array, Blob or ReadableStream), with optional
  /// `expirationTtl` (seconds from now), `expiration` (Unix seconds) and `metadata` (JSON).
  async put(key, value, options = {}) {
    const bytes = await toBytes(value);
    const ttl = ttlSeconds(options);
    const metadata =
      options.metadata === undefined || options.metadata === null
        ? undefined
        : encoder.encode(JSON.stringify(options.metadata));
    this.#call((bucket) => {
      if (ttl === undefined && metadata === undefined) {
        bucket.set(String(key), bytes);
      } else {
        setWithOptions(bucket, String(key), bytes, metadata, ttl);
      }
    });
  }

  async delete(key) {
    this.#call((bucket) => bucket.delete(String(key)));
  }

  /// Keys by prefix, in order, a page at a time: `{ keys: [{ name }], list_complete, cursor }`.
  async list(options = {}) {
    const prefix = options.prefix ?? "";
    const limit = Math.min(Math.max(1, Number(options.limit ?? 1000)), 1000);
    const [keys, next] = this.#call((bucket) =>
      listPrefix(bucket, prefix, options.cursor ?? undefined, limit),
    );
    const page = { keys: keys.map((name) => ({ name })), list_complete: next === undefined };
    if (next !== undefined) {
      page.cursor = next;
    }
    return page;
  }

  /// Add `delta` (default 1) to the counter at `key` (absent counts as 0); the new value.
  async increment(key, delta = 1) {
    const value = this.#call((bucket) => increment(bucket, String(key), BigInt(delta)));
    return Number(value);
  }

  /// Set `value` only if the current value is `expected` (null: only if absent); whether it was set.
  async compareAndSwap(key, expected, value) {
    const want = expected === null || expected === undefined ? undefined : await toBytes(expected);
    const bytes = await toBytes(value);
    return this.#call((bucket) => compareAndSwap(bucket, String(key), want, bytes));
  }
}

