/**
 * How the agent runs a dyno, whatever runs it: the process runtime (bubblewrap on the host) now,
 * a Docker runtime later. A runtime owns everything on the host a dyno leaves behind.
 */
export interface DynoSpec {
  /** Unique per start (not per dyno): a restart gets a fresh id, so leftovers never collide. */
  id: string;
  appId: string;
  /** The dyno's name, e.g. `web.1`; becomes DYNO and PS. */
  dyno: string;
  command: string;
  /** Host path of the slug's .tgz. */
  slugPath: string;
  /** The release's config vars. */
  env: Record<string, string>;
  /** Set for web dynos: the port the process must listen on. */
  port?: number;
  memoryBytes: number;
  pidsMax: number;
  onOutput(stream: 'stdout' | 'stderr', line: string): void;
}

export interface RunningDyno {
  id: string;
  pid: number;
  /** Settles once the dyno is gone and its host resources are released. */
  exited: Promise<{ code: number | null; oomKilled: boolean }>;
  /** SIGTERM, then SIGKILL after graceMs (Heroku's 30 s by default); settles after `exited`. */
  stop(graceMs?: number): Promise<void>;
  /**
   * Whether the process listening on this TCP port is this dyno's own. Dynos share the host's
   * network, so "the port answers" alone could be another tenant squatting it.
   */
  ownsPort(port: number): Promise<boolean>;
}

export interface Runtime {
  readonly name: string;
  start(spec: DynoSpec): Promise<RunningDyno>;
}
