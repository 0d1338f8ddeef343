import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { invalid } from '../../../domain/errors.js';

/** What service:install writes, from what it was given. Pure: the command does the file system. */
export interface ServiceSpec {
  /** The command line, already resolved: the checkout's wrapper (or node + entry) then `up` and its flags. */
  command: string[];
  workingDirectory: string;
  envFile: string;
}

/**
 * The environment `berth up` reads that belongs with the service: the secrets (cluster and
 * bootstrap tokens) and the settings an operator may have exported for it. They go in the
 * EnvironmentFile (mode 0600), never on the command line, where `ps` and the unit show them.
 */
export const SERVICE_ENV = ['BERTH_TOKEN', 'BERTH_CLUSTER_TOKEN', 'BERTH_BOOTSTRAP_TOKEN', 'BERTH_LOG_LEVEL', 'BERTH_CGROUP_ROOT', 'BERTH_BUILDPACK_DIRS'] as const;

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/**
 * One ExecStart word: double-quoted, with systemd's escapes — `\` and `"` backslashed, `%`
 * (specifiers) doubled, `$` (variable expansion) doubled — so every flag reaches berth up as given.
 */
export function execWord(word: string): string {
  if (CONTROL.test(word)) throw invalid(`A flag for the service cannot hold control characters or line breaks: ${JSON.stringify(word)}.`);
  return `"${word.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`;
}

/** One `KEY="value"` line of an EnvironmentFile (systemd unquotes it, with `\` escapes). */
export function envLine(key: string, value: string): string {
  if (!/^[A-Z_][A-Z0-9_]*$/.test(key)) throw invalid(`Not an environment variable name: ${key}.`);
  if (CONTROL.test(value)) throw invalid(`${key} cannot hold control characters or line breaks.`);
  return `${key}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '\\$')}"`;
}

/**
 * The unit. Why each setting: Restart=on-failure brings the platform back after a crash, not after
 * a deliberate stop; KillMode=mixed sends SIGTERM to berth alone, which stops its dynos itself
 * (each gets its 30 s grace, in parallel) — systemd killing every dyno at once would race that;
 * TimeoutStopSec covers that grace, the wait for routers to drop a dyno before it stops, and the
 * store closing, before SIGKILL; dynos hold many files and tasks between them, so the limits are
 * the machine's, not a service's defaults; Delegate: Berth makes its own cgroups for dynos.
 */
export function renderUnit(spec: ServiceSpec): string {
  return `# Written by berth service:install; berth service:uninstall removes it.
[Unit]
Description=Berth platform (berth up)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
EnvironmentFile=${execPathWord(spec.envFile)}
ExecStart=${spec.command.map(execWord).join(' ')}
WorkingDirectory=${execPathWord(spec.workingDirectory)}
Restart=on-failure
RestartSec=5
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=60
LimitNOFILE=1048576
TasksMax=infinity
Delegate=yes

[Install]
WantedBy=multi-user.target
`;
}

function execPathWord(path: string): string {
  if (/[\s\\"'%$]/.test(path) || CONTROL.test(path) || !path.startsWith('/')) throw invalid(`The service needs an absolute path without spaces, quotes, "%" or "$": ${JSON.stringify(path)}.`);
  return path;
}

export function renderEnvFile(env: NodeJS.ProcessEnv, token: string | undefined): string {
  const lines = ['# berth up settings and secrets for the berth service (mode 0600). Written by berth service:install.'];
  for (const key of SERVICE_ENV) {
    const value = key === 'BERTH_TOKEN' ? (token ?? env[key]) : env[key];
    if (value) lines.push(envLine(key, value));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * How systemd starts berth: the checkout's ./berth wrapper when the entry lives in one (it builds
 * what changed since the last start, after a git pull say), else node and the entry itself.
 */
export function serviceCommand(self: readonly string[]): { command: string[]; workingDirectory: string } {
  const entry = self[self.length - 1] as string;
  for (let dir = dirname(entry), i = 0; i < 4; dir = dirname(dir), i++) {
    if (existsSync(join(dir, 'berth')) && existsSync(join(dir, 'package.json'))) return { command: [join(dir, 'berth'), 'up'], workingDirectory: dir };
  }
  return { command: [...self, 'up'], workingDirectory: dirname(entry) };
}
