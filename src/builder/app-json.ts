import { invalid } from '../domain/errors.js';
import { normalizeHealthCheck, PROCESS_TYPE, type HealthChecks } from '../domain/records/health.js';
import { readTenantFile } from '../sandbox/index.js';

/** What app.json's `healthchecks` gives the slug, and what Berth says about what it skipped. */
export interface AppJsonHealthChecks {
  checks?: HealthChecks;
  /** One line each, for the build output. */
  notes: string[];
}

/** Dokku's check strategies Berth does not run: a check that sets one of these is skipped, not failed. */
const OTHER_STRATEGIES = ['command', 'uptime', 'listening'] as const;

/**
 * app.json's `healthchecks` (Dokku's schema: process type → list of checks), normalised. Berth
 * runs HTTP path checks against web dynos' `$PORT`: Dokku's other strategies and checks of
 * process types that listen on no port are skipped with a note, so a Dokku app still deploys; a
 * path check with a bad value fails the build, since the app would otherwise run unchecked.
 * A missing or unparsable app.json has no checks (the postdeploy reader already treats it so).
 */
export function readAppJsonHealthChecks(appDir: string): AppJsonHealthChecks {
  let parsed: unknown;
  try {
    const text = readTenantFile(appDir, 'app.json');
    if (text === undefined) return { notes: [] };
    parsed = JSON.parse(text);
  } catch {
    return { notes: [] };
  }
  return parseHealthChecks(parsed);
}

export function parseHealthChecks(appJson: unknown): AppJsonHealthChecks {
  const raw = typeof appJson === 'object' && appJson !== null ? (appJson as { healthchecks?: unknown }).healthchecks : undefined;
  if (raw === undefined || raw === null) return { notes: [] };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('app.json: healthchecks must be an object of process type → list of checks.');
  const checks: HealthChecks = {};
  const notes: string[] = [];
  for (const [type, list] of Object.entries(raw as Record<string, unknown>)) {
    if (!PROCESS_TYPE.test(type)) throw invalid(`app.json: healthchecks has an invalid process type name "${type.slice(0, 64)}".`);
    if (!Array.isArray(list)) throw invalid(`app.json: healthchecks.${type} must be a list of checks.`);
    const kept = [];
    for (const [i, entry] of list.entries()) {
      const where = `healthchecks.${type}[${i}]`;
      const other = typeof entry === 'object' && entry !== null ? OTHER_STRATEGIES.find((k) => (entry as Record<string, unknown>)[k] !== undefined && (entry as Record<string, unknown>)[k] !== false) : undefined;
      if (other) {
        notes.push(`${where}: skipped (Berth runs HTTP path checks only, not "${other}" checks)`);
        continue;
      }
      if (type !== 'web') {
        notes.push(`${where}: skipped (only web dynos listen on $PORT)`);
        continue;
      }
      try {
        kept.push(normalizeHealthCheck(entry));
      } catch (err) {
        throw invalid(`app.json: ${where}: ${(err as Error).message}.`);
      }
    }
    if (kept.length > 10) throw invalid(`app.json: healthchecks.${type} has ${kept.length} checks; at most 10 are allowed.`);
    if (kept.length > 0) checks[type] = kept;
  }
  return { ...(Object.keys(checks).length > 0 ? { checks } : {}), notes };
}
