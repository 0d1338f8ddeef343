import { chmodSync, chownSync, createReadStream, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from '../../domain/log.js';
import { DEFAULT_DISK_BYTES } from '../../domain/units.js';
import { cpuSharesFor, extractAs, MAX_CPU_SHARES, mountVolume, reapVolumes, UID_BASE, UID_COUNT, type Sandbox, type SandboxProcess, type Volume } from '../../sandbox/index.js';
import type { DynoInput, DynoSpec, RunningDyno, Runtime } from './types.js';

// Sourcing .profile.d is what buildpacks rely on to put their runtimes on PATH. The TERM trap keeps
// bash alive until the command has exited: were bash to die first, bwrap's init would follow and
// take the whole pid namespace down with SIGKILL, cutting the app's graceful shutdown short.
const SCRIPT = 'trap : TERM; for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; eval "$BERTH_COMMAND"';
// util-linux's script gives the command a pseudo-terminal in the sandbox's own devpts (bwrap
// --dev); -e passes the command's status on, -f writes each chunk as it comes.
const TTY_SCRIPT = `exec /bin/bash -c '${SCRIPT}'`;
// An app printing without newlines must not grow a buffer without bound.
const MAX_LINE = 64 * 1024;
// A dyno's disk: less leaves no room for a slug; more is beyond what limits:set lets anyone ask.
const MIN_DISK = 64 * 1024 * 1024;
const MAX_DISK = 64 * 1024 ** 3;

export interface ProcessRuntimeOptions {
  /** Host dir for per-dyno dirs; made 0711 so dyno uids can reach their own dir by name only. */
  workDir: string;
  /** Where dynos run (the node's one Sandbox, with its cgroup root). */
  sandbox: Sandbox;
  /** Where a disk that could not be reserved (no fallocate on the host's filesystem) is said. */
  log?: Logger;
}

/**
 * Dynos as sandboxed host processes (see src/sandbox/): the slug unpacked fresh on every start, so
 * the filesystem is ephemeral as on Heroku, into a filesystem of the dyno's own (a loop-mounted
 * volume of `diskBytes` owned by the app's uid) that also holds its /tmp: a dyno that fills its
 * disk gets ENOSPC, and the host loses no more than that. It runs in a cpu cgroup weighted by its
 * size, so many busy processes in one dyno do not starve another dyno's few. A dyno runs in the
 * network namespace the agent attached for it (`DynoSpec.netns`): the router reaches its PORT at
 * its overlay address, and nothing else on the host listens there.
 */
export class ProcessRuntime implements Runtime {
  readonly name = 'process';
  private readonly workDir: string;
  private readonly sandbox: Sandbox;
  private readonly log: Logger | undefined;

  /** Settles once what a previous agent left in the work dir is gone; every start waits for it. */
  private readonly ready: Promise<void>;

  constructor(options: ProcessRuntimeOptions) {
    this.workDir = resolve(options.workDir);
    this.sandbox = options.sandbox;
    this.log = options.log;
    mkdirSync(this.workDir, { recursive: true });
    chmodSync(this.workDir, 0o711);
    // Dynos die with the agent that started them (bwrap --die-with-parent): whatever a previous
    // agent left here is the disks of dead dynos. Unmounted first: removing the dir tree would
    // otherwise only empty the mounted filesystems and leave them, their images and loop devices.
    this.ready = reapVolumes(this.workDir).then(() => {
      for (const entry of readdirSync(this.workDir)) rmSync(join(this.workDir, entry), { recursive: true, force: true });
    });
    // Reported by the first start that waits for it; unobserved until then, not a crash.
    this.ready.catch(() => undefined);
    // Their cgroups stay behind too when that agent was SIGKILLed (any agent on the host may reap).
    this.sandbox.reapStaleCgroups('dyno-');
  }

  async start(spec: DynoSpec): Promise<RunningDyno> {
    // The id names a host dir and a cgroup; anything path-like could escape both.
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]*$/.test(spec.id)) throw new Error(`invalid dyno id: ${spec.id}`);
    // Only an app uid: never root's or a host user's.
    if (!Number.isInteger(spec.uid) || spec.uid < UID_BASE || spec.uid >= UID_BASE + UID_COUNT) throw new Error(`invalid dyno uid: ${spec.uid}`);
    const diskBytes = spec.diskBytes ?? DEFAULT_DISK_BYTES;
    if (!Number.isSafeInteger(diskBytes) || diskBytes < MIN_DISK || diskBytes > MAX_DISK) throw new Error(`invalid dyno disk size: ${spec.diskBytes}`);
    // Capped here too: whoever made the spec, no dyno outweighs a 2 GiB one.
    const cpuShares = Math.min(spec.cpuShares ?? cpuSharesFor(spec.memoryBytes), MAX_CPU_SHARES);
    await this.ready;
    const root = join(this.workDir, spec.id);
    // mkdir, not a check: two starts of one id race, and only one may make the dir.
    try {
      mkdirSync(root, { mode: 0o711 });
    } catch (e) {
      if ((e as { code?: string }).code === 'EEXIST') throw new Error(`dyno ${spec.id} is already running`);
      throw e;
    }
    const uid = spec.uid;
    const out = lineSplitter('stdout', spec.onOutput);
    const err = lineSplitter('stderr', spec.onOutput);
    const tty = spec.interactive?.tty;
    let proc: SandboxProcess;
    let volume: Volume | undefined;
    // The root stays root's (0711: the dyno's uid passes through by name); /app and /tmp are the
    // dyno's, on a filesystem of diskBytes of its own.
    const appDir = join(root, 'disk', 'app');
    const tmpDir = join(root, 'disk', 'tmp');
    try {
      writeIdentity(root, uid);
      volume = await mountVolume({ imagePath: join(root, 'disk.img'), mountpoint: join(root, 'disk'), bytes: diskBytes, uid, ...(this.log ? { log: this.log } : {}) });
      for (const [dir, mode] of [[appDir, 0o700], [tmpDir, 0o1777]] as const) {
        mkdirSync(dir, { mode });
        chmodSync(dir, mode);
        chownSync(dir, uid, uid);
      }
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
          // The dyno's memory in MB, as Heroku's Node.js profile script reads it for WEB_CONCURRENCY
          // (the dyno cannot see its cgroup); a config var may still set it.
          MEMORY_AVAILABLE: String(Math.floor(spec.memoryBytes / 1024 / 1024)),
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
        cpuShares,
        tmpDir,
        timeoutMs: Infinity,
        onOutput: (chunk, stream) => {
          spec.interactive?.onData(stream, chunk);
          return (stream === 'stdout' ? out : err).push(chunk);
        },
        stdin: spec.interactive !== undefined,
        ...(spec.netns !== undefined ? { netns: spec.netns } : {}),
      });
    } catch (e) {
      await removeDynoDir(root, volume);
      throw e;
    }
    const exited = proc.exited.then(async (r) => {
      out.flush();
      err.flush();
      await removeDynoDir(root, volume);
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

/** A dyno's disk and dir, after it is gone. Never throws: a rejected `exited` would leave the agent blind to the exit. */
async function removeDynoDir(root: string, volume: Volume | undefined): Promise<void> {
  try {
    await volume?.release();
    rmSync(root, { recursive: true, force: true });
  } catch {
    // A leftover costs disk until the next agent start reaps it.
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

function lineSplitter(stream: 'stdout' | 'stderr', emit: DynoSpec['onOutput']): { push(chunk: string): number; flush(): void } {
  let partial = '';
  return {
    /** A pause (ms) when a line was refused: the dyno is over its log rate, so reading waits. */
    push(chunk) {
      let refused = false;
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (emit(stream, line.replace(/\r$/, '')) === false) refused = true;
      while (partial.length > MAX_LINE) {
        if (emit(stream, partial.slice(0, MAX_LINE)) === false) refused = true;
        partial = partial.slice(MAX_LINE);
      }
      return refused ? 100 : 0;
    },
    flush() {
      if (partial) emit(stream, partial);
      partial = '';
    },
  };
}
