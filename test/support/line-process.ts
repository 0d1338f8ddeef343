import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { LabHost } from './netlab.js';

/**
 * A script run under tsx inside a lab host that speaks JSON lines: the net-node fixture
 * (test/network/fixtures/net-node.ts, which echoes each command's id) or bench:network's store
 * writer (which answers in order). Used by the overlay tests and the network benchmark alike.
 */

export interface Answer {
  id?: number;
  address?: string;
  netns?: string;
  port?: number;
  subnet?: string;
  backend?: string;
  error?: string;
  released?: string;
  env?: Record<string, string>;
  ok?: boolean;
  ms?: number;
}

export interface LineProcess {
  child: ChildProcess;
  /** The first line: the fixture's ready line, or the answer to `hello`. */
  first: Answer;
  send(cmd: Record<string, unknown>, timeoutMs?: number): Promise<Answer>;
  /** Closes stdin (the fixture releases its dynos and removes its table) and waits up to 10 s. */
  stop(): Promise<void>;
}

const START_MS = 30_000;

function bounded<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Spawns `script` inside `host` and waits for its first line (or, with `hello`, its answer to
 * that). Answers carry the command's id when the script echoes it, else they come in order.
 */
export async function startLineProcess(what: string, host: LabHost, script: string, config: unknown, hello?: Record<string, unknown>): Promise<LineProcess> {
  const child = host.spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const waiting: ((a: Answer) => void)[] = [];
  const byId = new Map<number, (a: Answer) => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let a: Answer;
    try {
      a = JSON.parse(line) as Answer;
    } catch {
      return;
    }
    const f = a.id !== undefined ? byId.get(a.id) : waiting.shift();
    if (a.id !== undefined) byId.delete(a.id);
    f?.(a);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let seq = 0;
  const send = (cmd: Record<string, unknown>, timeoutMs = 15_000): Promise<Answer> => {
    const id = ++seq;
    const answer = new Promise<Answer>((resolve, reject) => {
      const settle = (a: Answer): void => (a.error ? reject(new Error(`${what}: ${a.error}\n${stderr}`)) : resolve(a));
      if (hello) waiting.push(settle);
      else byId.set(id, settle);
      child.stdin?.write(`${JSON.stringify(hello ? cmd : { ...cmd, id })}\n`);
    });
    const gone = exited.then(() => Promise.reject(new Error(`${what} exited: ${stderr}`)));
    return bounded(`${what} ${String(cmd.op)}`, timeoutMs, Promise.race([answer, gone]));
  };
  const first = hello
    ? await send(hello, START_MS)
    : await bounded(`${what} start`, START_MS, Promise.race([new Promise<Answer>((resolve) => waiting.push(resolve)), exited.then(() => ({ error: 'exited' }))]));
  if (first.error) throw new Error(`${what}: ${first.error}\n${stderr}`);
  return {
    child,
    first,
    send,
    stop: async () => {
      child.stdin?.end();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    },
  };
}
