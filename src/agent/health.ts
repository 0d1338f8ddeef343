import { request } from 'node:http';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { tryDecode } from '../domain/codec.js';
import { codecs } from '../domain/records.js';
import { effectiveHealthChecks, type HealthCheck } from '../domain/records/health.js';
import type { Store } from '../store/index.js';

/**
 * HTTP health checks of a web dyno (Dokku's app.json `healthchecks`): a startup check gates the
 * dyno's publication, liveness and readiness checks watch it while it is up. Without checks the
 * agent keeps to "the port accepts" (ports.ts).
 */

export interface ProbeResult {
  ok: boolean;
  /** `HTTP 503`, `timed out after 5 s`, `connection refused`, …: what the app's log says. */
  detail: string;
}

// setTimeout overflows past this and would fire after 1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a probe reads of a body at most (to find `content`): a tenant's answer must not fill the agent's heap. */
const MAX_BODY_BYTES = 64 * 1024;

export const describeCheck = (c: HealthCheck): string => `${c.name ? `"${c.name}" (GET ${c.path})` : `GET ${c.path}`}`;

/** One GET to the dyno; a 2xx or 3xx answer (containing `content`, if set) within the timeout passes. Never throws. */
export function probe(address: string, port: number, check: HealthCheck): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    // The whole exchange, body included, not just the connect: a dyno that answers headers and
    // then stalls is not healthy.
    const timer = setTimeout(() => done({ ok: false, detail: `timed out after ${check.timeout} s` }), check.timeout * 1000);
    const req = request({ host: address, port, path: check.path, method: 'GET', agent: false, headers: { 'User-Agent': 'berth-healthcheck', Connection: 'close' } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 400) return done({ ok: false, detail: `HTTP ${status}` });
      if (check.content === undefined) return done({ ok: true, detail: `HTTP ${status}` });
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.includes(check.content as string)) done({ ok: true, detail: `HTTP ${status}` });
        else if (body.length > MAX_BODY_BYTES) done({ ok: false, detail: `HTTP ${status}, expected content not in the first ${MAX_BODY_BYTES / 1024} KB` });
      });
      res.on('end', () => done({ ok: false, detail: `HTTP ${status}, expected content not found` }));
      res.on('error', () => done({ ok: false, detail: 'the answer broke off' }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, detail: err.code === 'ECONNREFUSED' ? 'connection refused' : (err.code ?? err.message) }));
    req.end();
  });
}

/** Waits `ms`, or less once `abandon` says so (polled, so no stop has to know about this wait). */
async function pause(ms: number, abandon: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && !abandon()) await new Promise((r) => setTimeout(r, Math.min(100, until - Date.now())));
}

/**
 * Runs a dyno's startup checks (of `checks`, the others are left out) side by side (all must pass, as Dokku): each waits `initialDelay`,
 * then tries up to `attempts` times, `wait` seconds apart. Resolves when all passed; rejects with
 * what failed (the boot failure's reason), when `abandon` says the dyno is gone or stopping, or
 * when they have not all passed within `deadlineMs` after the largest `initialDelay`: within their
 * bounds the checks alone could keep a dyno starting (and a rollout waiting on it) for hours. The
 * delay comes on top, or an accepted check (initialDelay up to 600 s) could never pass in time.
 */
export async function runStartupChecks(
  address: string,
  port: number,
  checks: HealthCheck[],
  o: { abandon: () => boolean; deadlineMs?: number; say?: (line: string) => void },
): Promise<void> {
  const startup = checks.filter((c) => c.type === 'startup');
  if (startup.length === 0) return;
  // Set once the outcome is known (a check failed, or the deadline passed): the other checks stop trying.
  let decided = false;
  const over = (): boolean => decided || o.abandon();
  const all = Promise.all(
    startup.map(async (check) => {
      await pause(check.initialDelay * 1000, over);
      let last: ProbeResult = { ok: false, detail: 'not tried' };
      for (let attempt = 1; attempt <= check.attempts; attempt++) {
        if (over()) throw new Error('the dyno exited before it was up');
        last = await probe(address, port, check);
        if (last.ok) return;
        o.say?.(`Startup check ${describeCheck(check)} failed (attempt ${attempt}/${check.attempts}): ${last.detail}`);
        if (attempt < check.attempts) await pause(check.wait * 1000, over);
      }
      if (over()) throw new Error('the dyno exited before it was up');
      throw new Error(`startup check ${describeCheck(check)} failed ${check.attempts} time${check.attempts === 1 ? '' : 's'} (last: ${last.detail})`);
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    if (o.deadlineMs === undefined) return;
    const ms = o.deadlineMs + Math.max(...startup.map((c) => c.initialDelay)) * 1000;
    const seconds = Number((ms / 1000).toFixed(1));
    timer = setTimeout(() => reject(new Error(`startup checks did not all pass within ${seconds} s`)), Math.min(ms, MAX_TIMER_MS));
  });
  try {
    await Promise.race([all, deadline]);
  } finally {
    decided = true;
    clearTimeout(timer);
    // Whatever the checks still say once the race is decided is no longer news.
    all.catch(() => undefined);
  }
}
export interface MonitorEvents {
  /** The dyno became unready (a check began failing: no traffic until it passes) or ready again, with the line to log. */
  ready(ok: boolean, line: string): void;
  /** A liveness check failed `attempts` times in a row (why, as a sentence): restart the dyno. Ends the monitor. */
  dead(why: string): void;
}

/**
 * Liveness and readiness checks of an up dyno, each on its own timer (`initialDelay`, then every
 * `wait` seconds). The dyno is unready while any liveness check's latest probe failed (at once: it
 * may be hung) or any readiness check failed `attempts` times in a row (a blip does not flap the
 * router); `attempts` liveness failures in a row make it dead.
 */
export class HealthMonitor {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly failing = new Map<HealthCheck, string>();
  private stopped = false;
  private unready = false;

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly checks: HealthCheck[],
    private readonly events: MonitorEvents,
  ) {}

  start(): void {
    for (const check of this.checks) this.schedule(check, check.initialDelay * 1000, 0);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private schedule(check: HealthCheck, ms: number, failures: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      void this.tick(check, failures);
    }, ms);
    // A monitor never holds the process open: the agent's stop ends every dyno anyway.
    t.unref();
    this.timers.add(t);
  }

  private async tick(check: HealthCheck, failuresBefore: number): Promise<void> {
    const r = await probe(this.address, this.port, check);
    if (this.stopped) return;
    const failures = r.ok ? 0 : failuresBefore + 1;
    if (check.type === 'liveness' && failures >= check.attempts) {
      this.stop();
      this.events.dead(`Liveness check ${describeCheck(check)} failed ${failures} time${failures === 1 ? '' : 's'} in a row (last: ${r.detail})`);
      return;
    }
    const counts = check.type === 'liveness' ? failures >= 1 : failures >= check.attempts;
    if (counts) this.failing.set(check, `${check.type === 'liveness' ? 'Liveness' : 'Readiness'} check ${describeCheck(check)} failing (${r.detail}): no new requests until it passes`);
    else if (r.ok) this.failing.delete(check);
    this.settle();
    this.schedule(check, check.wait * 1000, failures);
  }

  private settle(): void {
    const first = this.failing.values().next();
    if (!first.done && !this.unready) {
      this.unready = true;
      this.events.ready(false, first.value);
    } else if (first.done && this.unready) {
      this.unready = false;
      this.events.ready(true, 'Health checks pass again: serving requests');
    }
  }
}

/**
 * The checks a dyno of `type` runs: app.json's in its slug's record, overridden per type by
 * `healthchecks:set` (`/berth/apps/<app>/healthchecks`), both read in one round trip when the dyno
 * starts. Both are validated here by their codecs: a value that does not fit reads as none (and
 * is logged), so the dyno falls back to the port check rather than not starting.
 */
export async function readHealthChecks(store: Store, appId: string, slugId: string, type: string, log: Logger): Promise<HealthCheck[]> {
  const r = await store.txn({ compare: [], success: [{ type: 'range', key: keys.slug(slugId) }, { type: 'range', key: keys.healthchecks(appId) }] });
  const [slugKv, overrideKv] = r.results.map((res) => (res.type === 'range' ? res.kvs[0] : undefined));
  const override = tryDecode(codecs.healthchecks, overrideKv);
  if (overrideKv && !override) log.warn({ key: overrideKv.key }, 'ignoring malformed health checks');
  return effectiveHealthChecks(tryDecode(codecs.slug, slugKv)?.healthchecks, override, type);
}
