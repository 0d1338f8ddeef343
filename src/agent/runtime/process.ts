import { execFile } from 'node:child_process';
import { chmodSync, createReadStream, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { extractAs, UID_BASE, UID_COUNT, type Sandbox, type SandboxProcess } from '../../sandbox/index.js';
import type { DynoInput, DynoSpec, RunningDyno, Runtime } from './types.js';

const exec = promisify(execFile);

// Sourcing .profile.d is what buildpacks rely on to put their runtimes on PATH. The TERM trap keeps
// bash alive until the command has exited: were bash to die first, bwrap's init would follow and
// take the whole pid namespace down with SIGKILL, cutting the app's graceful shutdown short.
const SCRIPT = 'trap : TERM; for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; eval "$BERTH_COMMAND"';
// util-linux's script gives the command a pseudo-terminal in the sandbox's own devpts (bwrap
// --dev); -e passes the command's status on, -f writes each chunk as it comes.
const TTY_SCRIPT = `exec /bin/bash -c '${SCRIPT}'`;
// An app printing without newlines must not grow a buffer without bound.
const MAX_LINE = 64 * 1024;

export interface ProcessRuntimeOptions {
  /** Host dir for per-dyno dirs; made 0711 so dyno uids can reach their own dir by name only. */
  workDir: string;
  /** Where dynos run (the node's one Sandbox, with its cgroup root). */
  sandbox: Sandbox;
}

/**
 * Dynos as sandboxed host processes (see src/sandbox/): the slug unpacked fresh into a dir owned by
 * the app's uid on every start, so the filesystem is ephemeral as on Heroku. A dyno runs in the
 * network namespace the agent attached for it (`DynoSpec.netns`): the router reaches its PORT at
 * its overlay address, and nothing else on the host listens there.
 */
export class ProcessRuntime implements Runtime {
  readonly name = 'process';
  private readonly workDir: string;
  private readonly sandbox: Sandbox;

  constructor(options: ProcessRuntimeOptions) {
    this.workDir = resolve(options.workDir);
    this.sandbox = options.sandbox;
    mkdirSync(this.workDir, { recursive: true });
    chmodSync(this.workDir, 0o711);
    // Dynos die with the agent that started them (bwrap --die-with-parent): whatever a previous
    // agent left here is unpacked slugs of dead dynos.
    for (const entry of readdirSync(this.workDir)) rmSync(join(this.workDir, entry), { recursive: true, force: true });
    // Their cgroups stay behind too when that agent was SIGKILLed (any agent on the host may reap).
    this.sandbox.reapStaleCgroups('dyno-');
  }

  async start(spec: DynoSpec): Promise<RunningDyno> {
    // The id names a host dir and a cgroup; anything path-like could escape both.
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]*$/.test(spec.id)) throw new Error(`invalid dyno id: ${spec.id}`);
    // Only an app uid: never root's or a host user's.
    if (!Number.isInteger(spec.uid) || spec.uid < UID_BASE || spec.uid >= UID_BASE + UID_COUNT) throw new Error(`invalid dyno uid: ${spec.uid}`);
    const root = join(this.workDir, spec.id);
    if (existsSync(root)) throw new Error(`dyno ${spec.id} is already running`);
    const appDir = join(root, 'app');
    const uid = spec.uid;
    const out = lineSplitter('stdout', spec.onOutput);
    const err = lineSplitter('stderr', spec.onOutput);
    const tty = spec.interactive?.tty;
    let proc: SandboxProcess;
    try {
      mkdirSync(appDir, { recursive: true, mode: 0o700 });
      await exec('chown', ['-R', `${uid}:${uid}`, root]);
      writeIdentity(root, uid);
      chmodSync(root, 0o700);
      chmodSync(appDir, 0o700);
      // A slug holds what a tenant's build wrote (symlinks included): unpack it as the app's uid,
      // never as root; setuid bits cannot survive an unprivileged tar either.
      await extractAs(uid, createReadStream(spec.slugPath), appDir, true);
      proc = this.sandbox.spawn({
        id: `dyno-${spec.id}`,
        argv: tty ? ['/usr/bin/script', '-qefc', `stty rows ${tty.lines} cols ${tty.columns} 2>/dev/null; ${TTY_SCRIPT}`, '/dev/null'] : ['/bin/bash', '-c', SCRIPT],
        binds: [
          { src: appDir, dest: '/app', writable: true },
          { src: join(root, 'passwd'), dest: '/etc/passwd' },
          { src: join(root, 'group'), dest: '/etc/group' },
          // The host's resolver may sit on its loopback, out of the namespace's reach.
          ...(spec.resolvConf !== undefined ? [{ src: spec.resolvConf, dest: '/etc/resolv.conf' }] : []),
        ],
        env: {
          PATH: '/usr/local/bin:/usr/bin:/bin',
          LANG: 'C.UTF-8',
          ...spec.env,
          // The platform's own contract with the process; config vars cannot bend it.
          HOME: '/app',
          DYNO: spec.dyno,
          PS: spec.dyno,
          ...(spec.port !== undefined ? { PORT: String(spec.port) } : {}),
          BERTH_COMMAND: spec.command,
        },
        cwd: '/app',
        uid,
        gid: uid,
        memoryBytes: spec.memoryBytes,
        pidsMax: spec.pidsMax,
        timeoutMs: Infinity,
        onOutput: (chunk, stream) => {
          spec.interactive?.onData(stream, chunk);
          (stream === 'stdout' ? out : err).push(chunk);
        },
        stdin: spec.interactive !== undefined,
        ...(spec.netns !== undefined ? { netns: spec.netns } : {}),
      });
    } catch (e) {
      rmSync(root, { recursive: true, force: true });
      throw e;
    }
    const exited = proc.exited.then((r) => {
      out.flush();
      err.flush();
      try {
        rmSync(root, { recursive: true, force: true });
      } catch {
        // A leftover dir costs disk; a rejected `exited` would leave the agent blind to the exit.
      }
      return { code: r.code, oomKilled: r.oomKilled };
    });
    return {
      id: spec.id,
      pid: proc.pid,
      exited,
      stop: async (graceMs = 30_000) => {
        await proc.stop(graceMs);
        await exited;
      },
      ...(proc.stdin ? { input: inputOf(proc.stdin) } : {}),
    };
  }
}

/**
 * The dyno's user, named as on Heroku (`u<uid>`, home /app), in a passwd and group of its own:
 * the host's name nobody by that uid, and `whoami`, `os.userInfo()` or a shell prompt want one.
 */
function writeIdentity(root: string, uid: number): void {
  const passwd = `root:x:0:0:root:/root:/usr/sbin/nologin\nu${uid}:x:${uid}:${uid}::/app:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`;
  writeFileSync(join(root, 'passwd'), passwd, { mode: 0o644 });
  writeFileSync(join(root, 'group'), `root:x:0:\nu${uid}:x:${uid}:\nnogroup:x:65534:\n`, { mode: 0o644 });
}

function inputOf(stdin: Writable): DynoInput {
  return {
    write: (data) => (stdin.writable ? stdin.write(data) : true),
    drained: () =>
      !stdin.writableNeedDrain || !stdin.writable
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const done = (): void => {
              stdin.off('drain', done).off('close', done);
              resolve();
            };
            stdin.once('drain', done).once('close', done);
          }),
    end: () => {
      if (stdin.writable) stdin.end();
    },
  };
}

function lineSplitter(stream: 'stdout' | 'stderr', emit: DynoSpec['onOutput']): { push(chunk: string): void; flush(): void } {
  let partial = '';
  return {
    push(chunk) {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) emit(stream, line.replace(/\r$/, ''));
      while (partial.length > MAX_LINE) {
        emit(stream, partial.slice(0, MAX_LINE));
        partial = partial.slice(MAX_LINE);
      }
    },
    flush() {
      if (partial) emit(stream, partial);
      partial = '';
    },
  };
}
