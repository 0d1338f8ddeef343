import { randomInt } from 'node:crypto';
import { connect, createServer, type Server } from 'node:net';
import type { DynoSpec, RunningDyno, Runtime } from '../../../src/agent/runtime/types.js';
import { UID_BASE, UID_COUNT } from '../../../src/sandbox/index.js';

/**
 * The commands the suite runs, each written in the implementation's own language (bash in a
 * slug for the process runtime, the fake's script steps for the fake): the suite states what a
 * command does, the harness how to say it.
 */
export interface RuntimeCommands {
  /** stdout `one\ntwo\r\n\npar`, stderr `oops\n`, then ~200 ms later stdout `tial\nlast` (no final newline); exits 0. */
  output: string;
  /** One line per name: `NAME=value`, or `NAME=<unset>`. */
  env(names: string[]): string;
  exit(code: number): string;
  /** Reads no input, exits with `code` after about `ms`. */
  exitAfter(ms: number, code: number): string;
  /** Listens on $PORT and says `listening` (exits non-zero when it cannot bind); on SIGTERM says `graceful` and exits 0. */
  serve: string;
  /** Says `up`, then on SIGTERM says `ignored TERM` and runs on. */
  ignoreSigterm: string;
  /** Holds `bytes` of memory, says `allocated`, exits 0. */
  allocate(bytes: number): string;
  /** Writes `mib` MiB to a new file in `dir` (/app or /tmp); says `wrote`, or `no space` when the disk filled first (ENOSPC). */
  fill(dir: '/app' | '/tmp', mib: number): string;
  /** Says `name? ` without a newline, reads a line, says `hi <line>` on stdout and `bye` on stderr, exits 0. */
  prompt: string;
  /** Reads its input to EOF, prints how many bytes that was, exits 0. */
  count: string;
  /** `tty <lines> <columns>` when stdin and stdout are a terminal, else `no tty`. */
  ttyCheck: string;
}

/** What an implementation's test file provides; the suite itself is written once. */
export interface RuntimeHarness {
  runtime: Runtime;
  /** The slug every spec names (the process runtime unpacks it; the fake reads none). */
  slugPath: string;
  commands: RuntimeCommands;
  teardown(): Promise<void>;
}

/**
 * What an implementation truly cannot do, known when tests are registered. Everything else in the
 * contract, memory limits included, every runtime honours (the fake models memory, see fake.ts).
 */
export interface RuntimeCapabilities {
  /** Interactive dynos with `tty` get a real pseudo-terminal (the fake has no terminal to give). */
  tty: boolean;
}

export interface StartOptions extends Partial<Omit<DynoSpec, 'interactive' | 'onOutput'>> {
  /** Makes the dyno interactive; its onData chunks are recorded in `Started.data`. */
  interactive?: { tty?: { columns: number; lines: number } };
}

export interface Started {
  dyno: RunningDyno;
  spec: DynoSpec;
  /** Every onOutput call, in order. */
  lines: { stream: 'stdout' | 'stderr'; line: string }[];
  /** Every onData call, in order (interactive dynos). */
  data: { stream: 'stdout' | 'stderr'; chunk: string }[];
  out(stream?: 'stdout' | 'stderr'): string[];
  text(stream?: 'stdout' | 'stderr'): string;
}

export interface SuiteContext {
  h: RuntimeHarness;
  start(command: string, options?: StartOptions): Promise<Started>;
}

let n = 0;

export function makeContext(started: RunningDyno[]): SuiteContext {
  const ctx = {} as SuiteContext;
  ctx.start = async (command, options = {}) => {
    const lines: Started['lines'] = [];
    const data: Started['data'] = [];
    const { interactive, ...rest } = options;
    n++;
    const spec: DynoSpec = {
      id: `rc${process.pid}-${n}`,
      appId: `conformance-app-${n}`,
      // Any uid of the app range stands for the one the store would allocate.
      uid: UID_BASE + randomInt(UID_COUNT),
      dyno: 'web.1',
      command,
      slugPath: ctx.h.slugPath,
      env: {},
      memoryBytes: 256 * 1024 * 1024,
      pidsMax: 100,
      onOutput: (stream, line) => lines.push({ stream, line }),
      ...(interactive ? { interactive: { ...interactive, onData: (stream, chunk) => data.push({ stream, chunk }) } } : {}),
      ...rest,
    };
    const dyno = await ctx.h.runtime.start(spec);
    started.push(dyno);
    return {
      dyno,
      spec,
      lines,
      data,
      out: (stream = 'stdout') => lines.filter((l) => l.stream === stream).map((l) => l.line),
      text: (stream = 'stdout') => data.filter((d) => d.stream === stream).map((d) => d.chunk).join(''),
    };
  };
  return ctx;
}

export { until } from '../../support/until.js';

/** 'pending' when the promise has not settled within ms. */
export function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<'pending'>((r) => (timer = setTimeout(() => r('pending'), ms)))]).finally(() => clearTimeout(timer));
}

/** A listener that is not the dyno's: another tenant, or anything else on the host. */
export function listen(port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer((s) => s.end());
    srv.once('error', reject);
    srv.listen(port, host, () => resolve(srv));
  });
}

export function close(srv: Server): Promise<void> {
  return new Promise((r) => srv.close(() => r()));
}

export function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
