import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';
import { showHealthChecks, type HealthCheckRow } from './index.js';

const NUMBERS = new Set(['attempts', 'timeout', 'wait', 'initialDelay']);
const FIELDS = new Set([...NUMBERS, 'type', 'path', 'content', 'name']);

/** `path=/health attempts=3` → the API's body; numbers as numbers, the server checks the rest. */
export function parseCheckFields(pairs: string[]): Record<string, string | number> {
  const body: Record<string, string | number> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    const key = i > 0 ? p.slice(0, i) : '';
    const value = p.slice(i + 1);
    if (!FIELDS.has(key)) throw invalid(`${p} is invalid. Use FIELD=VALUE with FIELD one of ${[...FIELDS].join(', ')}.`);
    if (NUMBERS.has(key)) {
      if (!/^\d{1,6}$/.test(value)) throw invalid(`${key} must be a whole number of ${key === 'attempts' ? 'tries' : 'seconds'}, got "${value}".`);
      body[key] = Number(value);
    } else body[key] = value;
  }
  if (body.path === undefined) throw invalid('Give the path to check, e.g. path=/health.');
  return body;
}

/**
 * `berth healthchecks:set web path=/health [type=startup attempts=3 timeout=5 wait=5
 * initialDelay=0 content=ok]`: sets the process type's check of that type (replacing app.json's),
 * and restarts the type's dynos so the new ones run it.
 */
export const register: Register = (program, ctx) => {
  appFlags(program.command('healthchecks:set <process-type> <fields...>').description('set an HTTP health check of a process type (path=/health [type=startup|liveness|readiness attempts=3 timeout=5 wait=5 initialDelay=0 content=TEXT])')).action(
    async (type: string, pairs: string[], opts: AppFlags) => {
      const body = parseCheckFields(pairs);
      const name = appName(ctx, opts);
      const rows = await step(ctx, `Setting the ${String(body.type ?? 'startup')} check of ${name}'s ${type} dynos and restarting them`, () =>
        clientFor(ctx).request<HealthCheckRow[]>('PUT', `/apps/${enc(name)}/healthchecks/${enc(type)}`, body),
      );
      ctx.out(showHealthChecks(name, rows));
    },
  );
};
