import { randomBytes } from 'node:crypto';
import type { RunningDyno, Runtime } from '../../agent/runtime/types.js';
import { get, putOp, tryDecode } from '../../domain/codec.js';
import { readLimits } from '../../domain/units.js';
import { conflict, errorMessage, invalid, notFound } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import type { Logger } from '../../domain/log.js';
import { codecs } from '../../domain/records.js';
import type { Attachment as NetworkAttachment, Networks } from '../../network/index.js';
import { allocateUid, oneOffCpuSharesFor } from '../../sandbox/index.js';
import { DEFAULT_MEMORY, SIZE_MEMORY } from '../../scheduler/types.js';
import { ControlLoop, Registration } from '../../loop/index.js';
import type { KeyValue, Store } from '../../store/index.js';
import type { AppAccess } from '../services/apps.js';
import type { RunRecord } from '../services/runs.js';
import type { UserRecord } from '../services/types.js';
import { createRun, deleteRunWithRetry, reclaimSlot, sweepRuns } from './slots.js';

export interface RunnerOptions {
  store: Store;
  log: Logger;
  /** The same runtime formation dynos run in: one-off dynos are sandboxed exactly alike. */
  runtime: Runtime;
  /** Each run gets a namespace and an overlay address, as a formation dyno does. */
  network: Networks;
  slugPath: (slugId: string) => Promise<string>;
  /** `false` when the line was dropped (the app is over its log rate): the dyno is then read more slowly. */
  appLog: (appId: string, line: { source: string; dyno: string; message: string }) => boolean | void;
  /** This controller node's id, recorded on its runs so a stop request reaches the right node. */
  node: string;
  leaseTtl?: number;
  /** How long an attached run waits for its client (Heroku's R13 attach error after that). */
  attachWindowMs?: number;
  /** SIGTERM, then SIGKILL after this. */
  stopGraceMs?: number;
  /** How often records and slots a failed delete left under this node's lease are swept (default 60 s). */
  sweepMs?: number;
}

export interface RunRequest {
  command: string;
  attach: boolean;
  env: Record<string, string>;
  size?: string;
  /** Seconds the dyno may live, however it is attached. */
  timeToLive: number;
  /** An attached run gets a pseudo-terminal unless the client says otherwise (`force_no_tty`). */
  tty: boolean;
}

/** Where an attached client's view of the dyno goes: the HTTP stream or a rendezvous socket. */
export interface Sink {
  started(name: string): void;
  /** Output as the dyno writes it (not split into lines: a prompt has no newline). */
  output(stream: 'stdout' | 'stderr', chunk: string): void;
  exited(code: number): void;
  failed(message: string): void;
}

/** What an attached client holds: its input to the dyno, and hanging up. */
export interface Attachment {
  /** Whether the dyno runs on a pseudo-terminal. */
  readonly tty: boolean;
  /** False while the dyno has this much unread: wait for `drained`. */
  write(data: string | Buffer): boolean;
  drained(): Promise<void>;
  /** The client's input has ended: the command reads EOF. */
  end(): void;
  /** The client is gone: the dyno stops. */
  detach(): void;
}

// Input that comes before the dyno has started is kept; past this much the client is asked to
// wait (write returns false) until it has.
const MAX_EARLY_INPUT = 1024 * 1024;

interface LocalRun {
  key: string;
  /** The slot of the app's run.max it holds (slots.ts). */
  slotKey: string;
  record: RunRecord;
  /** Mod revision of our last write: a stop request written since must not be overwritten. */
  mod: number;
  secret: string;
  appName: string;
  command: string;
  env: Record<string, string>;
  slugId: string;
  memoryBytes: number;
  diskBytes?: number;
  userEmail: string;
  tty?: { columns: number; lines: number };
  /** Input that came before the dyno could take it. */
  early: { chunks: (string | Buffer)[]; bytes: number; ended: boolean };
  /** Settles once the dyno is running, or will never run: what early input waits for. */
  ready: { promise: Promise<void>; resolve(): void };
  phase: 'pending' | 'starting' | 'running' | 'stopping' | 'done';
  sink?: Sink;
  running?: RunningDyno;
  /** Its namespace, from its start until it has ended. */
  network?: NetworkAttachment;
  timers: NodeJS.Timeout[];
}

export const DEFAULT_TTL = 3600;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Runs one-off dynos in this controller process: `run.N` of the app's current release, in the
 * same sandboxed runtime as formation dynos. Each run is recorded under this node's lease so
 * every node lists it and can ask for it to stop; its output goes to the app's log stream and to
 * the one client attached to it, if any.
 */
export class OneOffRunner {
  private readonly runs = new Map<string, LocalRun>();
  private readonly bySecret = new Map<string, LocalRun>();
  /** Ended runs whose record and slot are still being deleted: a sweep leaves them to that delete. */
  private readonly ending = new Set<LocalRun>();
  private registration: Registration | undefined;
  private loop: ControlLoop | undefined;
  /** Keys of this node's runs someone asked to stop: fed by the watch, acted on by a pass. */
  private readonly stopRequests = new Set<string>();
  private closed = false;
  /** Runs being recorded now: their keys are under the lease before they are in `runs`. */
  private creating = 0;
  private lastSweep = 0;
  /** A delete failed: sweep at the next pass rather than after `sweepMs`. */
  private sweepSoon = false;

  constructor(private readonly o: RunnerOptions) {}

  async start(): Promise<void> {
    this.registration = await Registration.start({
      store: this.o.store,
      log: this.o.log,
      ttl: this.o.leaseTtl ?? 10,
      // The records go with a lost lease; the dynos do not. Record them again under the new one.
      register: async (lease) => {
        for (const local of this.runs.values()) {
          await this.write(local, local.record.state, true, lease);
          await reclaimSlot(this.o.store, local.slotKey, local.record.name, lease);
        }
      },
    });
    const noteStop = (kv: KeyValue): boolean => {
      const wanted = this.runs.has(kv.key) && tryDecode(codecs.run, kv)?.state === 'stopping';
      if (wanted) this.stopRequests.add(kv.key);
      return wanted;
    };
    this.loop = new ControlLoop({
      store: this.o.store,
      log: this.o.log,
      prefix: keys.allRuns(),
      // Stop requests missed while the watch was down: the records say so now.
      load: async () => {
        const r = await this.o.store.range(keys.allRuns(), { prefix: true });
        return { revision: r.revision, commit: () => void r.kvs.forEach(noteStop) };
      },
      apply: (batch) => batch.events.filter((e) => e.type === 'put' && noteStop(e.kv)).length > 0,
      pass: async () => {
        for (const key of this.stopRequests) {
          this.stopRequests.delete(key);
          const local = this.runs.get(key);
          if (local) void this.stop(local, 'stopped by user');
        }
        await this.sweep();
      },
      debounceMs: 0,
      maxWaitMs: 0,
      resyncMs: this.o.sweepMs ?? 60_000,
    });
    await this.loop.start();
  }

  /** Records a new run.N of the app's current release; it starts now, or once a client attaches. */
  async create(access: AppAccess, user: UserRecord, req: RunRequest): Promise<{ record: RunRecord; secret: string }> {
    if (this.closed || !this.registration?.leaseId) throw conflict('This node is not running one-off dynos.');
    const command = req.command.trim();
    if (!command) throw invalid('Command is empty. Usage: berth run COMMAND');
    for (const k of Object.keys(req.env)) if (!ENV_NAME.test(k)) throw invalid(`Invalid env var name "${k}": use letters, digits and underscores, not starting with a digit.`);
    const size = (req.size ?? 'standard-1x').toLowerCase();
    if (SIZE_MEMORY[size] === undefined) throw invalid(`Size ${req.size} is not one of ${Object.keys(SIZE_MEMORY).join(', ')}.`);
    const { app } = access;
    // The release that runs (the newest that succeeded), as the scheduler picks it.
    const version = app.current_version || app.release_version;
    const release = version > 0 ? (await get(this.o.store, keys.release(app.id, version), codecs.release))?.value : undefined;
    if (!release?.slug_id) throw invalid(`${app.name} has no release with a slug yet. Deploy it with git push first.`);
    const limits = readLimits((await get(this.o.store, keys.appLimits(app.id), codecs.limits))?.value);
    const now = new Date().toISOString();
    const base = { app_id: app.id, type: 'run' as const, state: 'starting' as const, command, size, release: { id: release.id, version: release.version }, node: this.o.node, user_id: user.id, attach: req.attach, created_at: now, updated_at: now };
    const local: LocalRun = {
      key: '',
      slotKey: '',
      record: { ...base, name: '' },
      mod: 0,
      secret: randomBytes(32).toString('hex'),
      appName: app.name,
      command: expandProcessType(command, release.process_types),
      env: { ...release.config, ...req.env },
      slugId: release.slug_id,
      // Sized like the app's other dynos: `limits:set run=…` and `run.disk=…`, else the size's memory.
      memoryBytes: limits.memory.run ?? SIZE_MEMORY[size] ?? DEFAULT_MEMORY,
      ...(limits.disk.run !== undefined ? { diskBytes: limits.disk.run } : {}),
      userEmail: user.email,
      ...(req.attach && req.tty ? { tty: terminalSize(req.env) } : {}),
      early: { chunks: [], bytes: 0, ended: false },
      ready: deferred(),
      phase: 'pending',
      timers: [],
    };
    // Heroku numbers one-off dynos at random (run.4821): unique per app by a create-only write,
    // in one of the app's run.max slots (429 when none is free).
    this.creating++;
    let created: Awaited<ReturnType<typeof createRun>>;
    try {
      created = await createRun(this.o.store, { appName: app.name, maxRuns: limits.maxRuns, lease: () => this.registration?.leaseId, record: base });
    } finally {
      // `runs` holds it (below) before any other code runs: a sweep never finds it in neither.
      this.creating--;
    }
    Object.assign(local, { key: created.key, slotKey: created.slotKey, record: created.record, mod: created.revision });
    this.runs.set(local.key, local);
    this.bySecret.set(local.secret, local);
    local.timers.push(setTimeout(() => void this.stop(local, 'time to live exceeded'), req.timeToLive * 1000));
    if (req.attach) {
      local.timers.push(
        setTimeout(() => {
          if (local.phase !== 'pending') return;
          this.appLog(local, 'Error R13 (Attach error) -> Failed to attach to process');
          void this.finish(local);
        }, this.o.attachWindowMs ?? 60_000),
      );
    } else void this.run(local);
    return { record: local.record, secret: local.secret };
  }

  /** Heroku's rendezvous: the attach URL's secret is the only credential. */
  attachBySecret(secret: string, sink: Sink): Attachment {
    const local = this.bySecret.get(secret);
    if (!local) throw notFound('dyno');
    return this.attach(local, sink);
  }

  /** Berth's own stream: the API has authenticated the user; only the run's maker may attach. */
  attachByName(appId: string, name: string, user: UserRecord, sink: Sink): Attachment {
    const local = this.runs.get(keys.run(appId, name));
    if (!local || local.record.user_id !== user.id) throw notFound('dyno');
    return this.attach(local, sink);
  }

  /** Starts the dyno with the sink attached; its input goes to the dyno, detaching stops it. */
  private attach(local: LocalRun, sink: Sink): Attachment {
    if (!local.record.attach) throw conflict(`${local.record.name} runs detached; its output is in the app's logs.`);
    if (local.phase !== 'pending' || local.sink) throw conflict(`${local.record.name} is already attached.`);
    local.sink = sink;
    this.bySecret.delete(local.secret);
    void this.run(local);
    return {
      tty: local.tty !== undefined,
      write: (data) => {
        if (local.running?.input) return local.running.input.write(data);
        if (local.phase === 'stopping' || local.phase === 'done') return true;
        // Still starting: kept in order, as a terminal keeps what is typed ahead.
        local.early.chunks.push(data);
        local.early.bytes += Buffer.byteLength(data);
        return local.early.bytes < MAX_EARLY_INPUT;
      },
      drained: () => local.running?.input?.drained() ?? local.ready.promise,
      end: () => {
        if (local.running?.input) local.running.input.end();
        else local.early.ended = true;
      },
      detach: () => {
        if (local.sink !== sink) return;
        local.sink = undefined;
        void this.stop(local, 'client disconnected');
      },
    };
  }

  private async run(local: LocalRun): Promise<void> {
    const name = local.record.name;
    local.phase = 'starting';
    this.appLog(local, `Starting process with command \`${local.record.command}\` by user ${local.userEmail}`);
    try {
      const uid = await allocateUid(this.o.store, local.record.app_id);
      const net = await this.o.network.attachDyno({ appId: local.record.app_id, group: uid, owner: name });
      // Held by the run from here: finish releases it, whichever way the run ends.
      local.network = net;
      const running = await this.o.runtime.start({
        id: `${local.appName}.${name}-${randomBytes(4).toString('hex')}`,
        appId: local.record.app_id,
        uid,
        dyno: name,
        command: local.command,
        slugPath: await this.o.slugPath(local.slugId),
        // The platform's variables (HEROKU_PRIVATE_IP) win over config vars and the client's env.
        env: { ...local.env, ...net.env },
        ...(net.netns !== undefined ? { netns: net.netns } : {}),
        ...(net.resolvConf !== undefined ? { resolvConf: net.resolvConf } : {}),
        memoryBytes: local.memoryBytes,
        // Weighted no more than a default dyno, however much memory run= asks for (nothing reserves it).
        cpuShares: oneOffCpuSharesFor(local.memoryBytes),
        ...(local.diskBytes !== undefined ? { diskBytes: local.diskBytes } : {}),
        pidsMax: 512,
        // As on Heroku, an attached session (keystrokes echoed, secrets pasted) is its client's
        // alone; a detached run's output is all anyone will see, so it goes to the logs.
        // A detached run over the app's log rate gets `false` back, so the runtime pauses reading it.
        onOutput: (_stream, line) => (local.record.attach ? undefined : this.o.appLog(local.record.app_id, { source: 'app', dyno: name, message: line })),
        ...(local.record.attach ? { interactive: { ...(local.tty ? { tty: local.tty } : {}), onData: (stream, chunk) => local.sink?.output(stream, chunk) } } : {}),
      });
      local.running = running;
      for (const chunk of local.early.chunks) running.input?.write(chunk);
      if (local.early.ended) running.input?.end();
      local.early.chunks = [];
      local.ready.resolve();
      void running.exited.then((exit) => this.finish(local, exit.oomKilled ? 137 : (exit.code ?? 137), exit.oomKilled));
      // Stopped while it was starting (client gone, DELETE, shutdown): now that it exists, stop it.
      if ((local.phase as LocalRun['phase']) === 'stopping') {
        await running.stop(this.o.stopGraceMs ?? 10_000);
        return;
      }
      local.phase = 'running';
      local.sink?.started(name);
      this.appLog(local, 'State changed from starting to up');
      if (local.record.state === 'starting') await this.write(local, 'up');
    } catch (err) {
      this.o.log.warn({ app: local.appName, dyno: name, err: errorMessage(err) }, 'one-off dyno failed to start');
      this.appLog(local, `Error R10 (Boot failure) -> ${errorMessage(err)}`);
      local.sink?.failed(`The dyno failed to start: ${errorMessage(err)}`);
      local.sink = undefined;
      await this.finish(local);
    }
  }

  async stop(local: LocalRun, why: string): Promise<void> {
    if (local.phase === 'done' || local.phase === 'stopping') return;
    const was = local.phase;
    local.phase = 'stopping';
    this.appLog(local, `Stopping process (${why})`);
    if (was === 'pending') return this.finish(local);
    if (was === 'running') await local.running?.stop(this.o.stopGraceMs ?? 10_000);
  }

  private async finish(local: LocalRun, code?: number, oomKilled = false): Promise<void> {
    if (local.phase === 'done') return;
    local.phase = 'done';
    local.ready.resolve();
    for (const t of local.timers) clearTimeout(t);
    this.runs.delete(local.key);
    this.ending.add(local);
    this.bySecret.delete(local.secret);
    if (oomKilled) this.appLog(local, 'Error R15 (Memory quota vastly exceeded) -> killed at its memory limit');
    if (code !== undefined) this.appLog(local, `Process exited with status ${code}`);
    // Gone from `ps` before its client hears the exit status.
    // A record left behind holds one of the app's run.max slots: tried again, then swept.
    await deleteRunWithRetry(this.o.store, local, local.record.name).catch((err: unknown) => {
      this.o.log.warn({ key: local.key, err: errorMessage(err) }, 'could not remove a one-off dyno record; it will be swept');
      this.sweepSoon = true;
    });
    this.ending.delete(local);
    if (code !== undefined) local.sink?.exited(code);
    await this.releaseNetwork(local);
  }

  /** Its process is gone (or never started): the namespace and address go too. Never throws. */
  private async releaseNetwork(local: LocalRun): Promise<void> {
    const net = local.network;
    local.network = undefined;
    await net?.release().catch((err: unknown) => this.o.log.warn({ app: local.appName, dyno: local.record.name, err: errorMessage(err) }, "could not release a one-off dyno's network"));
  }

  /** Records and slots under this node's lease whose run has ended here (a delete that failed). */
  private async sweep(): Promise<void> {
    const lease = this.registration?.leaseId;
    if (!lease || (!this.sweepSoon && Date.now() - this.lastSweep < (this.o.sweepMs ?? 60_000))) return;
    this.sweepSoon = false;
    this.lastSweep = Date.now();
    try {
      const keep = (): Set<string> | undefined => (this.creating > 0 ? undefined : new Set([...this.runs.values(), ...this.ending].flatMap((l) => [l.key, l.slotKey])));
      const swept = await sweepRuns(this.o.store, lease, keep);
      // Skipped while a run was being recorded: again at the next pass.
      if (swept === undefined) this.sweepSoon = true;
      else if (swept > 0) this.o.log.info({ swept }, 'removed one-off dyno records and slots left behind');
    } catch (err) {
      this.sweepSoon = true;
      this.o.log.warn({ err: errorMessage(err) }, 'could not sweep one-off dyno records');
    }
  }

  /** Our own state changes lose to a stop request written meanwhile (compare on our last write). */
  private async write(local: LocalRun, state: RunRecord['state'], force = false, lease = this.registration?.leaseId): Promise<void> {
    if (!lease) return;
    const record: RunRecord = { ...local.record, state, updated_at: new Date().toISOString() };
    const r = await this.o.store.txn({
      compare: force ? [] : [{ key: local.key, target: 'mod', op: '=', value: local.mod }],
      success: [putOp(local.key, codecs.run, record, lease)],
    });
    if (r.succeeded) Object.assign(local, { record, mod: r.revision });
  }

  private appLog(local: LocalRun, message: string): void {
    this.o.appLog(local.record.app_id, { source: 'berth', dyno: local.record.name, message });
  }

  /** Stops every dyno this node runs (the node is shutting down); their records go with the lease. */
  async close(): Promise<void> {
    this.closed = true;
    await this.loop?.stop();
    await Promise.all([...this.runs.values()].map((l) => this.stop(l, 'node shutting down')));
    // Runs still starting stop as soon as they have started.
    for (const deadline = Date.now() + 15_000; this.runs.size > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
    await this.registration?.stop();
  }
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** The client's terminal, as the heroku CLI reports it in the run's env (COLUMNS, LINES). */
function terminalSize(env: Record<string, string>): { columns: number; lines: number } {
  const dim = (v: string | undefined, fallback: number): number => (v && /^\d{1,4}$/.test(v) && Number(v) > 0 ? Number(v) : fallback);
  return { columns: dim(env.COLUMNS, 80), lines: dim(env.LINES, 24) };
}

/** `heroku run worker` runs the Procfile's worker command, with any arguments after it. */
function expandProcessType(command: string, types: Record<string, string>): string {
  const first = command.split(/\s/, 1)[0] ?? '';
  const defined = Object.hasOwn(types, first) ? types[first] : undefined;
  return defined ? defined + command.slice(first.length) : command;
}
