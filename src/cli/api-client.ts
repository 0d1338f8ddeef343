import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Netrc } from 'netrc-parser';
import { BerthError, ErrorCode } from '../domain/errors.js';
import { configFile, type CliContext } from './context.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:5000';

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

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    if (!this.token) throw new BerthError(ErrorCode.Unauthorized, 'Not logged in. Run `berth login`, or set BERTH_API_KEY.');
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
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
      throw new BerthError('unreachable', `Cannot reach the Berth API at ${this.baseUrl}: ${(err as Error).cause ?? (err as Error).message}`);
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
  return new ApiClient(url, apiToken(ctx, url));
}
