/* eslint-disable @typescript-eslint/no-explicit-any -- JSON under test: each call site names the type it expects */

/** What the API answered: the status and the body (JSON parsed; other text as is; undefined if empty). */
export interface ApiReply<T = any> {
  status: number;
  body: T;
}

export interface Api {
  /** A call as the client's user (or `o.token`'s); answers whatever status came back. */
  <T = any>(method: string, path: string, body?: unknown, o?: { token?: string }): Promise<ApiReply<T>>;
  /** The body of a 2xx answer; any other status throws with the method, path, status and body. */
  ok<T = any>(method: string, path: string, body?: unknown, o?: { token?: string }): Promise<T>;
}

/**
 * The one helper for calling a running Berth's API over HTTP, as the CLI does: a bearer token, a
 * JSON body (and its content type) only when there is one — Fastify refuses a DELETE that
 * announces JSON and sends none. `base` may be a function for suites whose node starts later.
 * (In-process controller tests use `apiHarness().call`, which injects into Fastify instead.)
 */
export function apiClient(base: string | (() => string), token?: string): Api {
  const call = async <T = any>(method: string, path: string, body?: unknown, o: { token?: string } = {}): Promise<ApiReply<T>> => {
    const auth = o.token ?? token;
    const res = await fetch(`${typeof base === 'function' ? base() : base}${path}`, {
      method,
      headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text.length > 0 ? text : undefined;
    try {
      if (text) parsed = JSON.parse(text);
    } catch {
      // Not JSON (a plain-text error, a log stream): the text itself.
    }
    return { status: res.status, body: parsed as T };
  };
  const ok = async <T = any>(method: string, path: string, body?: unknown, o?: { token?: string }): Promise<T> => {
    const r = await call<T>(method, path, body, o);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`);
    return r.body;
  };
  return Object.assign(call, { ok });
}
