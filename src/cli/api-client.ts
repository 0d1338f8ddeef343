import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Netrc } from 'netrc-parser';
import { BerthError, ErrorCode } from '../domain/errors.js';
import { configFile, type CliContext } from './context.js';
import { caWith, pinnedCa } from './trust.js';

/** Where `berth up` serves by default: over TLS, as it listens beyond loopback. */
export const DEFAULT_API_URL = 'https://127.0.0.1:5000';

/** BERTH_API_URL, else the URL `berth login` saved, else the local default. */
export function apiUrl(ctx: CliContext): string {
  if (ctx.env.BERTH_API_URL) return ctx.env.BERTH_API_URL.replace(/\/+$/, '');
  const file = configFile(ctx);
  if (existsSync(file)) {
    const saved = (JSON.parse(readFileSync(file, 'utf8')) as { api_url?: string }).api_url;
    if (saved) return saved;
  }
  return DEFAULT_API_URL;
}

/** The netrc machine name for an API URL: host:port, as the heroku CLI keys it. */
export function netrcMachine(url: string): string {
  return new URL(url).host;
}

export function netrcFor(ctx: CliContext): Netrc {
  const n = new Netrc(join(ctx.home, '.netrc'));
  n.loadSync();
  return n;
}

/** BERTH_API_KEY, else the password netrc holds for the API host. */
export function apiToken(ctx: CliContext, url: string): string | undefined {
  if (ctx.env.BERTH_API_KEY) return ctx.env.BERTH_API_KEY;
  return netrcFor(ctx).machines[netrcMachine(url)]?.password;
}

/** An API failure as the server described it (`{id, message}`), or as the network did. */
export class ApiError extends BerthError {
  constructor(
    readonly status: number,
    id: string,
    message: string,
  ) {
    super(id, message);
  }
}

/** Why a connection failed, and what the user can do about it when that is known. */
export function unreachable(base: string, err: unknown): BerthError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code ?? '';
  const detail = cause?.message ?? (err as Error).message;
  let hint = '';
  if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED/.test(code)) hint = ` Its certificate is not trusted here: run berth login --api-url ${base} --fingerprint <the SHA-256 berth up printed>.`;
  else if (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST/.test(code)) hint = ` It answers plain HTTP (berth up --no-tls?): use ${base.replace(/^https:/i, 'http:')} if that is meant.`;
  return new BerthError('unreachable', `Cannot reach the Berth API at ${base}: ${detail}.${hint}`);
}

type Fetch = (url: string, init?: RequestInit) => Promise<Response>;

export class ApiClient {
  private fetcher?: Promise<Fetch>;

  /** `ca`: a certificate `berth login` pinned for this API, trusted besides the system's. */
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    readonly ca?: string,
  ) {}

  /** node:https options that trust what this client trusts (for connections fetch cannot make). */
  tlsOptions(): { ca?: string[] } {
    return this.ca ? { ca: caWith(this.ca) } : {};
  }

  /**
   * fetch, trusting the pinned certificate too. undici is loaded only then: most calls go to an
   * API the system trusts (or plain HTTP on loopback) and do not pay for it.
   */
  fetch(url: string, init?: RequestInit): Promise<Response> {
    if (!this.ca) return fetch(url, init);
    const ca = this.ca;
    this.fetcher ??= import('undici').then(({ Agent, fetch: undiciFetch }) => {
      const dispatcher = new Agent({ connect: { ca: caWith(ca) } });
      return ((u, i) => undiciFetch(u, { ...(i as object), dispatcher })) as Fetch;
    });
    return this.fetcher.then((f) => f(url, init));
  }

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    if (!this.token) throw new BerthError(ErrorCode.Unauthorized, 'Not logged in. Run `berth login`, or set BERTH_API_KEY.');
    let res: Response;
    try {
      res = await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          accept: 'application/vnd.heroku+json; version=3',
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw unreachable(this.baseUrl, err);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // A proxy's HTML error page, say: report the status, not a parse error.
      parsed = undefined;
    }
    if (!res.ok) {
      const e = (parsed ?? {}) as { id?: string; message?: string };
      throw new ApiError(res.status, e.id ?? `http_${res.status}`, e.message ?? `${method} ${path} failed with HTTP ${res.status}.`);
    }
    return parsed as T;
  }

  get<T>(path: string, headers?: Record<string, string>): Promise<T> {
    return this.request<T>('GET', path, undefined, headers);
  }
}

export function clientFor(ctx: CliContext): ApiClient {
  const url = apiUrl(ctx);
  return new ApiClient(url, apiToken(ctx, url), pinnedCa(ctx, url));
}
