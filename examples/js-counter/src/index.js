// A page-view counter and a small notes API on the edge KV, written exactly as a Cloudflare
// Worker is: a default export with `fetch(request, env, ctx)`, standard Request and Response,
// KV through `env.KV`, settings through `env.vars`.
//
// | request                      | does                                                       |
// | ---------------------------- | ---------------------------------------------------------- |
// | GET /                        | counts the view (at the origin: every node's views add up) |
// | GET /counters/NAME           | a named counter                                            |
// | POST /counters/NAME          | adds `by` (JSON body, default 1) to it                     |
// | PUT /notes/KEY               | stores the body (`?ttl=SECONDS` to expire it)              |
// | GET /notes/KEY               | the note, read from this node's replica                    |
// | DELETE /notes/KEY            | deletes it                                                 |
// | GET /notes?prefix=P          | lists note keys                                            |
// | GET /greeting                | the GREETING config value                                  |
// | GET /whoami                  | what the node says of the request (`request.cf`), as JSON  |
// | GET /upstream                | fetches the UPSTREAM config URL (if [outbound] allows it)  |
// | GET /primes?below=N          | counts primes below N: CPU work, bounded by limits.cpu_ms  |
//
// `scheduled` runs on each tick of the app's cron trigger (`[[triggers]]` in outpost.toml), as
// a Worker's does: it counts the runs in the counter `cron` (GET /counters/cron).

const json = (value, init = {}) =>
  new Response(JSON.stringify(value), {
    ...init,
    headers: { "content-type": "application/json", ...(init.headers ?? {}) },
  });

const notFound = (what) => new Response(`${what} not found\n`, { status: 404 });

async function notes(request, env, key, url) {
  switch (request.method) {
    case "GET": {
      const { value, metadata } = await env.KV.getWithMetadata(`note/${key}`);
      if (value === null) {
        return notFound(`note ${JSON.stringify(key)}`);
      }
      return new Response(value, {
        headers: {
          "content-type": metadata?.type ?? "text/plain; charset=utf-8",
          "x-note-key": key,
        },
      });
    }
    case "PUT": {
      const ttl = url.searchParams.get("ttl");
      const options = {
        metadata: { type: request.headers.get("content-type") ?? "text/plain" },
      };
      if (ttl !== null) {
        options.expirationTtl = Number(ttl);
      }
      await env.KV.put(`note/${key}`, await request.text(), options);
      return new Response(null, { status: 204 });
    }
    case "DELETE":
      await env.KV.delete(`note/${key}`);
      return new Response(null, { status: 204 });
    default:
      return new Response("use GET, PUT or DELETE\n", {
        status: 405,
        headers: { allow: "GET, PUT, DELETE" },
      });
  }
}

async function listNotes(env, url) {
  const prefix = `note/${url.searchParams.get("prefix") ?? ""}`;
  const keys = [];
  let cursor;
  do {
    const page = await env.KV.list({ prefix, cursor });
    keys.push(...page.keys.map((k) => k.name.slice("note/".length)));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);
  return json(keys);
}

function countPrimes(below) {
  let count = 0;
  for (let n = 2; n < below; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const [, section, name] = url.pathname.split("/").map(decodeURIComponent);

    if (url.pathname === "/") {
      const views = await env.KV.increment("views");
      return new Response(`views: ${views}\n`, { headers: { "x-views": String(views) } });
    }
    if (section === "counters" && name) {
      if (request.method === "POST") {
        // A body that is not JSON throws here: an uncaught exception, answered 500.
        const { by = 1 } = await request.json();
        return json({ name, value: await env.KV.increment(`counter/${name}`, by) });
      }
      const value = await env.KV.get(`counter/${name}`);
      return value === null ? notFound(`counter ${JSON.stringify(name)}`) : json({ name, value: Number(value) });
    }
    if (section === "notes" && name) {
      return notes(request, env, name, url);
    }
    if (url.pathname === "/notes") {
      return listNotes(env, url);
    }
    if (url.pathname === "/whoami") {
      return json(request.cf);
    }
    if (url.pathname === "/greeting") {
      return new Response(`${env.vars.GREETING}\n`);
    }
    if (url.pathname === "/upstream") {
      try {
        const upstream = await fetch(env.vars.UPSTREAM);
        return new Response(upstream.body, {
          status: upstream.status,
          headers: { "content-type": upstream.headers.get("content-type") ?? "text/plain", "x-upstream": env.vars.UPSTREAM },
        });
      } catch (err) {
        return new Response(`fetching ${env.vars.UPSTREAM} failed: ${err.message}\n`, { status: 502 });
      }
    }
    if (url.pathname === "/primes") {
      const below = Number(url.searchParams.get("below") ?? "1000");
      return json({ below, primes: countPrimes(below) });
    }
    return notFound(url.pathname);
  },

  async scheduled(event, env, ctx) {
    await env.KV.increment("counter/cron");
    console.log(`cron ${event.cron} ran for ${new Date(event.scheduledTime).toISOString()}`);
  },
};
