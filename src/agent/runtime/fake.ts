import { createServer, type Server } from 'node:net';
import { DEFAULT_DISK_BYTES } from '../../domain/units.js';
import type { DynoInput, DynoSpec, RunningDyno, Runtime } from './types.js';

/**
 * A real in-memory runtime, for in-process tests of the agent, scheduler and one-off runner on the
 * memory store: crash loops, boot failures and stop ordering without bubblewrap, root or slugs. It
 * passes the same conformance suite as the process runtime (test/agent/runtime-conformance.ts).
 * Its dynos live in the test's own process, on loopback: it pairs with the loopback network
 * (src/network/loopback.ts) and refuses a spec with a network namespace.
 *
 * A command is a script of steps separated by `;`, interpreted in order:
 *   echo TEXT | echo-err TEXT    a line on stdout | stderr ($NAME: the dyno's env, or $REPLY)
 *   write "json" | write-err ..  exactly that JSON string (partial lines, \r\n)
 *   env NAME...                  `NAME=value` per name, `NAME=<unset>` for an unset one
 *   sleep MS | hang              wait MS | until stopped or crashed
 *   exit CODE | crash-after MS [CODE]   exit now | after MS (code 1 by default)
 *   serve                        a real TCP server on 127.0.0.1:$PORT (the agent's port probe is
 *                                real); says `listening`, or exits 1 when the port is taken
 *   graceful | ignore-sigterm    SIGTERM says `graceful` and exits 0 | says `ignored TERM`;
 *                                without either, SIGTERM ends the dyno with 143, as a shell's child
 *   alloc BYTES | oom            holds that much memory | more than spec.memoryBytes: past the
 *                                limit the dyno is OOM-killed (137, oomKilled), as the cgroup does
 *   fill DIR MIB                 writes MIB MiB to a file in DIR (/app or /tmp, one disk of
 *                                spec.diskBytes): says `wrote`, or `no space` past the disk (ENOSPC)
 *   read | cat | count           a line of input into $REPLY | input to stdout | prints the input's
 *                                byte count, until EOF
 *   tty                          says `no tty`: the fake has no terminal (stderr still joins stdout)
 * A script that runs out of steps exits 0, unless it serves or hangs.
 */
export interface FakeCall {
  op: 'start' | 'stop' | 'exit';
  id: string;
  dyno: string;
  graceMs?: number;
  code?: number | null;
  oomKilled?: boolean;
}

export interface FakeRuntimeOptions {
  /** How long each start takes, as unpacking a slug does (0 by default). */
  startDelayMs?: number;
  /** Also told every call as it happens, to merge into a test's own timeline (store writes, …). */
  onCall?: (call: FakeCall) => void;
}

// Unread input past this makes write() return false, as a pipe's buffer does.
const HIGH_WATER = 64 * 1024;
// Pids no host process has (above the kernel's pid_max), so nothing mistakes them for real ones.
let nextPid = 5_000_000;

export class FakeRuntime implements Runtime {
  readonly name = 'fake';
  /** Every start, stop and exit, in order: what stop-ordering tests assert on. */
  readonly calls: FakeCall[] = [];
  /** Failure injection: a start whose spec this answers an Error for throws it (a boot failure). */
  failStart?: (spec: DynoSpec) => Error | undefined;
  private readonly dynos = new Map<string, FakeDyno>();

  constructor(private readonly options: FakeRuntimeOptions = {}) {}

  /** The dynos running now, oldest first. */
  running(): { id: string; pid: number; spec: DynoSpec }[] {
    return [...this.dynos.values()].map((d) => ({ id: d.spec.id, pid: d.pid, spec: d.spec }));
  }

  /** The process dies on its own with this code, as a crashing app does. */
  crash(id: string, code = 1): void {
    const d = this.dynos.get(id);
    if (!d) throw new Error(`no running dyno ${id}`);
    d.exit(code);
  }

  async start(spec: DynoSpec): Promise<RunningDyno> {
    this.record({ op: 'start', id: spec.id, dyno: spec.dyno });
    if (this.dynos.has(spec.id)) throw new Error(`dyno ${spec.id} is already running`);
    if (spec.netns !== undefined) throw new Error('fake runtime: its dynos cannot enter a network namespace (use the loopback network)');
    if (this.options.startDelayMs) await new Promise((r) => setTimeout(r, this.options.startDelayMs));
    const failure = this.failStart?.(spec);
    if (failure) throw failure;
    // The slug is not read: the script is the whole program.
    const d = new FakeDyno(spec, (code, oomKilled) => {
      this.dynos.delete(spec.id);
      this.record({ op: 'exit', id: spec.id, dyno: spec.dyno, code, oomKilled });
    });
    this.dynos.set(spec.id, d);
    d.run();
    return {
      id: spec.id,
      pid: d.pid,
      exited: d.exited,
      stop: async (graceMs = 30_000) => {
        this.record({ op: 'stop', id: spec.id, dyno: spec.dyno, graceMs });
        d.stop(graceMs);
        await d.exited;
      },
      ...(spec.interactive ? { input: d.input } : {}),
    };
  }

  private record(call: FakeCall): void {
    this.calls.push(call);
    this.options.onCall?.(call);
  }
}

class FakeDyno {
  readonly pid = nextPid++;
  readonly input = new FakeInput();
  readonly exited: Promise<{ code: number | null; oomKilled: boolean }>;
  server?: Server;
  private resolveExit!: (r: { code: number | null; oomKilled: boolean }) => void;
  private done = false;
  private onTerm: 'default' | 'graceful' | 'ignore' = 'default';
  private terminating = false;
  private memory = 0;
  private disk = 0;
  private reply = '';
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly partial = { stdout: '', stderr: '' };
  private readonly env: Record<string, string>;

  constructor(
    readonly spec: DynoSpec,
    private readonly onExit: (code: number | null, oomKilled: boolean) => void,
  ) {
    // As the process runtime: the platform's variables win over config vars.
    this.env = { ...spec.env, DYNO: spec.dyno, PS: spec.dyno, ...(spec.port !== undefined ? { PORT: String(spec.port) } : {}) };
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  run(): void {
    void this.script().then(
      (keepRunning) => keepRunning || this.exit(0),
      (err: Error) => {
        this.print('stderr', `${err.message}\n`);
        this.exit(1);
      },
    );
  }

  /** Runs the steps; true when the dyno should stay up after them (it serves or hangs). */
  private async script(): Promise<boolean> {
    let serving = false;
    for (const step of this.spec.command.split(';').map((s) => s.trim()).filter(Boolean)) {
      if (this.done) return true;
      const [op = '', ...args] = step.split(/\s+/);
      const rest = step.slice(op.length).trim();
      const n = (i: number): number => Number(args[i]);
      switch (op) {
        case 'echo': case 'echo-err': this.print(op === 'echo' ? 'stdout' : 'stderr', `${rest.replace(/\$(\w+)/g, (_, v: string) => (v === 'REPLY' ? this.reply : (this.env[v] ?? '')))}\n`); break;
        case 'write': case 'write-err': this.print(op === 'write' ? 'stdout' : 'stderr', JSON.parse(rest) as string); break;
        case 'env': for (const v of args) this.print('stdout', `${v}=${this.env[v] ?? '<unset>'}\n`); break;
        case 'sleep': await this.sleep(n(0)); break;
        case 'hang': return true;
        case 'exit': this.exit(n(0)); return true;
        case 'crash-after': await this.sleep(n(0)); this.exit(args[1] === undefined ? 1 : n(1)); return true;
        case 'serve': serving = true; await this.serve(); break;
        case 'graceful': this.onTerm = 'graceful'; break;
        case 'ignore-sigterm': this.onTerm = 'ignore'; break;
        case 'alloc': case 'oom':
          this.memory += op === 'oom' ? this.spec.memoryBytes + 1 : n(0);
          if (this.memory > this.spec.memoryBytes) {
            this.exit(137, true);
            return true;
          }
          break;
        case 'fill': {
          // What a full filesystem does: the write stops at the edge, the bytes up to it stay.
          const room = (this.spec.diskBytes ?? DEFAULT_DISK_BYTES) - this.disk;
          const want = n(1) * 1024 * 1024;
          this.disk += Math.min(room, want);
          this.print('stdout', want > room ? 'no space\n' : 'wrote\n');
          break;
        }
        case 'read': this.reply = ((await this.input.read(true))?.toString() ?? '').replace(/\r?\n$/, ''); break;
        case 'cat': for (let b; (b = await this.input.read()) !== null; ) this.print('stdout', b.toString()); break;
        case 'count': { let total = 0; for (let b; (b = await this.input.read()) !== null; ) total += b.length; this.print('stdout', `${total}\n`); break; }
        case 'tty': this.print('stdout', 'no tty\n'); break;
        default: throw new Error(`fake runtime: unknown step '${op}'`);
      }
    }
    return serving || this.done;
  }

  private serve(): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = createServer((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'));
      server.once('error', (err) => reject(new Error(`serve: ${err.message}`)));
      server.listen(Number(this.env.PORT), '127.0.0.1', () => {
        this.server = server;
        this.print('stdout', 'listening\n');
        resolve();
      });
    });
  }

  stop(graceMs: number): void {
    if (this.done) return;
    // SIGKILL, as at the end of the grace period: the runtime's own kill has no exit code.
    if (graceMs <= 0) return this.exit(null);
    if (this.terminating) return;
    this.terminating = true;
    const kill = setTimeout(() => this.exit(null), graceMs);
    this.timers.add(kill);
    if (this.onTerm === 'ignore') this.print('stdout', 'ignored TERM\n');
    else if (this.onTerm === 'graceful') {
      this.print('stdout', 'graceful\n');
      this.exit(0);
    } else this.exit(143);
  }

  exit(code: number | null, oomKilled = false): void {
    if (this.done) return;
    this.done = true;
    for (const t of this.timers) clearTimeout(t);
    this.input.close();
    for (const stream of ['stdout', 'stderr'] as const) if (this.partial[stream]) this.spec.onOutput(stream, this.partial[stream]);
    // Settles only once the port is free again: "host resources released", as the contract says.
    const closed = this.server ? new Promise<void>((r) => this.server?.close(() => r())) : Promise.resolve();
    void closed.then(() => {
      this.server = undefined;
      this.onExit(code, oomKilled);
      this.resolveExit({ code, oomKilled });
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => (this.timers.delete(t), resolve()), ms);
      this.timers.add(t);
    });
  }

  /** What a process writes: to onData as it comes, and to onOutput a line at a time. */
  private print(s: 'stdout' | 'stderr', text: string): void {
    if (this.done) return;
    const stream = this.spec.interactive?.tty && s === 'stderr' ? 'stdout' : s;
    this.spec.interactive?.onData(stream, text);
    const lines = (this.partial[stream] + text).split('\n');
    this.partial[stream] = lines.pop() ?? '';
    for (const line of lines) this.spec.onOutput(stream, line.replace(/\r$/, ''));
  }
}

/** A pipe the script reads at its own pace (a macrotask later), so backpressure is real. */
class FakeInput implements DynoInput {
  private pending = Buffer.alloc(0);
  private ended = false;
  private closed = false;
  private wake?: () => void;
  private drainers: (() => void)[] = [];

  write(data: string | Buffer): boolean {
    if (this.closed || this.ended) return true;
    this.pending = Buffer.concat([this.pending, typeof data === 'string' ? Buffer.from(data) : data]);
    this.wake?.();
    return this.pending.length < HIGH_WATER;
  }

  drained(): Promise<void> {
    return this.pending.length === 0 || this.closed ? Promise.resolve() : new Promise((r) => this.drainers.push(r));
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  /** A line with its newline (or what is left at EOF), else all unread input; null at EOF. */
  async read(line = false): Promise<Buffer | null> {
    const enough = (): boolean => (line ? this.pending.includes(10) : this.pending.length > 0) || this.ended || this.closed;
    for (;;) {
      // A macrotask later: a writer's synchronous burst piles up as it would in a pipe.
      await new Promise((r) => setImmediate(r));
      if (enough()) break;
      await new Promise<void>((r) => (this.wake = r));
    }
    this.wake = undefined;
    const nl = this.pending.indexOf(10);
    const end = line && nl >= 0 ? nl + 1 : this.pending.length;
    const chunk = this.pending.subarray(0, end);
    this.pending = this.pending.subarray(end);
    if (this.pending.length === 0) this.released();
    return chunk.length > 0 ? chunk : null;
  }

  close(): void {
    this.closed = true;
    this.pending = Buffer.alloc(0);
    this.released();
    this.wake?.();
  }

  private released(): void {
    for (const d of this.drainers.splice(0)) d();
  }
}
