import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, table } from '../../output.js';

/** What the API answers for each effective check. */
export interface HealthCheckRow {
  process_type: string;
  type: string;
  path: string;
  attempts: number;
  timeout: number;
  wait: number;
  initialDelay: number;
  content?: string;
  name?: string;
  source: string;
}

export function showHealthChecks(name: string, rows: HealthCheckRow[]): string {
  if (rows.length === 0) return `${header(`${name} Health Checks`)}\nNo health checks: a web dyno is up once its port accepts connections.`;
  return `${header(`${name} Health Checks`)}\n${table(
    ['Process', 'Type', 'Path', 'Attempts', 'Timeout', 'Wait', 'Delay', 'Content', 'Source'],
    rows.map((r) => [r.process_type, r.type, r.path, String(r.attempts), `${r.timeout}s`, `${r.wait}s`, `${r.initialDelay}s`, r.content ?? '', r.source]),
  )}`;
}

/** `berth healthchecks`: the HTTP health checks each process type runs, and where they come from. */
export const register: Register = (program, ctx) => {
  appFlags(program.command('healthchecks').description('show the HTTP health checks of an app').option('--json', 'output in json format')).action(async (opts: AppFlags & { json?: boolean }) => {
    const name = appName(ctx, opts);
    const rows = await clientFor(ctx).get<HealthCheckRow[]>(`/apps/${enc(name)}/healthchecks`);
    if (opts.json) return json(ctx, rows);
    ctx.out(showHealthChecks(name, rows));
  });
};
