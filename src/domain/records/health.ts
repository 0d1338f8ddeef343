import { z } from 'zod';

/**
 * HTTP health checks per process type, in Dokku's app.json shape (`healthchecks`: process type →
 * list of checks). Berth runs path checks against a web dyno's `$PORT`; the fields it keeps are
 * the ones Dokku defines for them, with Dokku's defaults filled in. Every check that crosses the
 * store is in this normalised form; `normalizeHealthCheck` is the one way to it, from app.json
 * (the builder) or `healthchecks:set` (the controller), and the agent validates again on read.
 */

export const HEALTH_CHECK_TYPES = ['startup', 'liveness', 'readiness'] as const;
export type HealthCheckType = (typeof HEALTH_CHECK_TYPES)[number];

export interface HealthCheck {
  /** startup: gates publishing; liveness: restarts a dyno that stops answering; readiness: unpublishes it meanwhile. */
  type: HealthCheckType;
  /** Requested as GET at the dyno's address:$PORT; a 2xx or 3xx answer passes. */
  path: string;
  /** Tries (startup) or consecutive failures (liveness, readiness) before the check fails. */
  attempts: number;
  /** Seconds one request may take. */
  timeout: number;
  /** Seconds between tries (and between periodic checks). */
  wait: number;
  /** Seconds after the dyno is up before the first try. */
  initialDelay: number;
  /** Text the answer's body must contain. */
  content?: string;
  name?: string;
}

/** Process type → its checks. */
export type HealthChecks = Record<string, HealthCheck[]>;

/** Dokku's defaults (docker-container-healthchecker). */
export const HEALTH_CHECK_DEFAULTS = { type: 'startup', path: '/', attempts: 3, timeout: 5, wait: 5, initialDelay: 0 } as const;

/** What `normalizeHealthCheck` accepts: bounded, so a tenant cannot make an agent probe forever or without pause. */
export const HEALTH_CHECK_LIMITS = { attempts: [1, 60], timeout: [1, 60], wait: [1, 300], initialDelay: [0, 600] } as const;
const MAX_CHECKS_PER_TYPE = 10;
const MAX_TYPES = 20;

/** Procfile process type names (procfile.ts). */
export const PROCESS_TYPE = /^[A-Za-z0-9_-]{1,63}$/;
/** An origin-form path: printable ASCII without spaces, so it cannot add a header line or split the request line. */
const PATH = /^\/[\x21-\x7e]{0,1023}$/;
/** Printable text without control characters (no CR/LF to forge a log line). */
const printable = (v: string): boolean => [...v].every((ch) => ch >= ' ' && ch !== '\u007f');

const bounded = (name: keyof typeof HEALTH_CHECK_LIMITS) =>
  z.number().int().min(HEALTH_CHECK_LIMITS[name][0]).max(HEALTH_CHECK_LIMITS[name][1]);

export const healthCheckSchema: z.ZodType<HealthCheck> = z.object({
  type: z.enum(HEALTH_CHECK_TYPES),
  path: z.string().regex(PATH),
  attempts: bounded('attempts'),
  timeout: bounded('timeout'),
  wait: bounded('wait'),
  initialDelay: bounded('initialDelay'),
  content: z.string().min(1).max(256).refine(printable).optional(),
  name: z.string().min(1).max(100).refine(printable).optional(),
});

export const healthChecksSchema: z.ZodType<HealthChecks> = z
  .record(z.string().regex(PROCESS_TYPE), z.array(healthCheckSchema).max(MAX_CHECKS_PER_TYPE))
  .refine((r) => Object.keys(r).length <= MAX_TYPES, `at most ${MAX_TYPES} process types`);

/**
 * One check from what a user wrote (app.json's entry, or `healthchecks:set`'s fields): Dokku's
 * defaults filled in, every value checked. Throws an Error whose message says what is wrong, for
 * the caller to wrap in its own words (a failed build, a 422).
 */
export function normalizeHealthCheck(raw: unknown): HealthCheck {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('a check must be an object');
  const r = raw as Record<string, unknown>;
  const type = r.type === undefined || r.type === '' ? HEALTH_CHECK_DEFAULTS.type : r.type;
  if (typeof type !== 'string' || !(HEALTH_CHECK_TYPES as readonly string[]).includes(type)) throw new Error(`type must be one of ${HEALTH_CHECK_TYPES.join(', ')}`);
  const path = r.path ?? HEALTH_CHECK_DEFAULTS.path;
  if (typeof path !== 'string' || !PATH.test(path)) throw new Error('path must start with / and hold no spaces or control characters (at most 1024 characters)');
  const num = (name: keyof typeof HEALTH_CHECK_LIMITS): number => {
    const v = r[name] ?? HEALTH_CHECK_DEFAULTS[name];
    const [lo, hi] = HEALTH_CHECK_LIMITS[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new Error(`${name} must be a whole number from ${lo} to ${hi}`);
    return v;
  };
  const text = (name: 'content' | 'name', max: number): string | undefined => {
    const v = r[name];
    if (v === undefined || v === '') return undefined;
    if (typeof v !== 'string' || v.length > max || !printable(v)) throw new Error(`${name} must be text of at most ${max} characters without control characters`);
    return v;
  };
  const content = text('content', 256);
  const name = text('name', 100);
  return {
    type: type as HealthCheckType,
    path,
    attempts: num('attempts'),
    timeout: num('timeout'),
    wait: num('wait'),
    initialDelay: num('initialDelay'),
    ...(content !== undefined ? { content } : {}),
    ...(name !== undefined ? { name } : {}),
  };
}

/**
 * The checks a process type runs: app.json's, except that a check type (startup, liveness,
 * readiness) the app's override (`healthchecks:set`) has for this process type replaces
 * app.json's checks of that type.
 */
export function effectiveHealthChecks(fromSlug: HealthChecks | undefined, override: HealthChecks | undefined, type: string): HealthCheck[] {
  const own = (r: HealthChecks | undefined): HealthCheck[] => (r && Object.hasOwn(r, type) ? (r[type] ?? []) : []);
  const over = own(override);
  const replaced = new Set(over.map((c) => c.type));
  return [...own(fromSlug).filter((c) => !replaced.has(c.type)), ...over];
}
