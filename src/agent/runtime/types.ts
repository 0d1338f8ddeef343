/**
 * How the agent runs a dyno, whatever runs it: the process runtime (bubblewrap on the host) now,
 * a Docker runtime later. A runtime owns everything on the host a dyno leaves behind, except its
 * network namespace, which the agent attaches before and releases after (src/network/).
 */
export interface DynoSpec {
  /** Unique per start (not per dyno): a restart gets a fresh id, so leftovers never collide. */
  id: string;
  appId: string;
  /** The app's unprivileged uid (`allocateUid`): the dyno's files and processes are its. */
  uid: number;
  /** The dyno's name, e.g. `web.1`; becomes DYNO and PS. */
  dyno: string;
  command: string;
  /** Host path of the slug's .tgz. */
  slugPath: string;
  /** The release's config vars. */
  env: Record<string, string>;
  /** Set for web dynos: the port the process must listen on. */
  port?: number;
  /**
   * The dyno's network namespace (`/run/netns/<name>`, made by the network); the host's network
   * without one (the fake runtime's in-process dynos on loopback).
   */
  netns?: string;
  /** A host file the dyno sees at /etc/resolv.conf: a resolver it can reach from its namespace. */
  resolvConf?: string;
  memoryBytes: number;
  pidsMax: number;
  /**
   * The dyno's writable space, /app and /tmp together (`DEFAULT_DISK_BYTES` when absent): past
   * it, writes fail with ENOSPC. The slug is unpacked into it, so it counts too.
   */
  diskBytes?: number;
  /** CPU weight against other dynos when the CPU is contended; by memory when absent (`cpuSharesFor`). */
  cpuShares?: number;
  /**
   * Output a line at a time (without its newline): what the log stream keeps. `false` means the
   * line was refused (the app is over its log rate): the runtime may read more slowly for a while.
   */
  onOutput(stream: 'stdout' | 'stderr', line: string): unknown;
  /**
   * An attached one-off dyno: its stdin is `RunningDyno.input`, and its output also reaches
   * `onData` as it comes, prompts without a newline included. With `tty` the command runs on a
   * pseudo-terminal of that size, as Heroku runs `heroku run bash` (stderr then joins stdout).
   */
  interactive?: {
    tty?: { columns: number; lines: number };
    onData(stream: 'stdout' | 'stderr', chunk: string): void;
  };
}

export interface DynoInput {
  /** False once the command has this much unread: wait for `drained` before writing on. */
  write(data: string | Buffer): boolean;
  drained(): Promise<void>;
  /** End of input: the command reads EOF (on a tty, once its line is read). */
  end(): void;
}

export interface RunningDyno {
  id: string;
  pid: number;
  /** Settles once the dyno is gone and its host resources are released. */
  exited: Promise<{ code: number | null; oomKilled: boolean }>;
  /** SIGTERM, then SIGKILL after graceMs (Heroku's 30 s by default); settles after `exited`. */
  stop(graceMs?: number): Promise<void>;
  /** Set for interactive dynos. */
  input?: DynoInput;
}

export interface Runtime {
  readonly name: string;
  start(spec: DynoSpec): Promise<RunningDyno>;
}
