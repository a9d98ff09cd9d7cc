// The JavaScript hello of the benchmark harness: what examples/hello answers, Workers style.
export default {
  async fetch(request) {
    const url = new URL(request.url);
    return new Response(
      `hello from outpost\npath: ${url.pathname}\nuser-agent: ${request.headers.get("user-agent") ?? ""}\n`,
      { headers: { "content-type": "text/plain; charset=utf-8" } },
    );
  },
};
