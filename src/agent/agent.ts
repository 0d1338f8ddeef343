import { randomUUID } from 'node:crypto';
import { decodeAll, get, put, putOp } from '../domain/codec.js';
import { codecs, type DynoState, type ReleaseRecord } from '../domain/records.js';
import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import { dynoStatus, unitKey, type MachineInfo, type UnitSpec } from '../domain/units.js';
import { waitForRouters } from '../domain/routers.js';
import type { Logger } from '../domain/log.js';
import { ControlLoop, Registration } from '../loop/index.js';
import type { Attachment, Networks } from '../network/index.js';
import { allocateUid } from '../sandbox/index.js';
import type { Store, TxnOp, WatchBatch } from '../store/index.js';
import { LOGPLEX_DYNO, LogRateLimiter } from './log-limiter.js';
import { waitForPort } from './ports.js';
import { HealthMonitor, readHealthChecks, runStartupChecks } from './health.js';
import type { HealthCheck } from '../domain/records/health.js';
import type { RunningDyno, Runtime } from './runtime/types.js';

export type { MachineInfo };

/** What the scheduler writes at /berth/units/<machine>/<unit>@v<n>. */
export type UnitAssignment = UnitSpec;

export interface AgentOptions {
  store: Store;
  log: Logger;
  machine: MachineInfo;
  runtime: Runtime;
  /** A namespace and an address per dyno (the overlay; the loopback network on the fake runtime). */
  network: Networks;
  /** Host path of a slug's tarball (fetched and checksum-verified if need be). */
  slugPath: (slugId: string) => Promise<string>;
  /** Where dyno output and platform lines go (the app's log stream). */
  appLog: (appId: string, source: string, dyno: string, message: string) => void;
  /**
   * A release of one of this machine's units. Default: read from the store; an agent machine of a
   * secured cluster, whose certificate reads releases sealed, asks a server (`ControllerLink`).
   */
  release?: (appId: string, version: number) => Promise<ReleaseRecord | undefined>;
  /** The app's uid. Default: allocated in the store; from the same server as `release` otherwise. */
  uidOf?: (appId: string) => Promise<number>;
  ttl?: number;
  bootTimeoutMs?: number;
  /** The most a web dyno's startup checks may take together, after the largest initialDelay, before it fails to boot (R10; default 10 min). */
  startupTimeoutMs?: number;
  /** A pass from memory this often (crash backoffs end; default 5 s). */
  reconcileMs?: number;
  /** A full re-read of the assignments this often (default 60 s). */
  repairMs?: number;
  /** The first crash restart's delay, doubled per crash up to 5 min (default 1 s, as Heroku). */
  crashBackoffMs?: number;
}

interface Dyno {
  unit: UnitAssignment;
  /** Its namespace and address, from the first start until it is stopped for good (crash restarts keep it). */
  attachment: Attachment | undefined;
  /** The revision of the latest removal of its endpoint: its address is freed once routers applied it. */
  unpublishedAt?: number;
  running: RunningDyno | undefined;
  state: 'starting' | 'up' | 'crashed' | 'stopping';
  restarts: number;
  /** Crashes since the dyno last stayed up a while: what the backoff grows with. */
  failures: number;
  nextStart: number;
  upSince: number;
  /** Why the process exited while it was still starting (the start reports it). */
  exitReason?: string;
  createdAt: string;
  /** Bumped on every start, so a stale exit handler can tell it is stale. */
  generation: number;
  /** The start in flight, if any: a stop waits for it before it releases the namespace. */
  starting?: Promise<void>;
  release?: ReleaseRecord;
  /** Its liveness and readiness checks while it is up; `unready` while one fails (it is unpublished then). */
  monitor?: HealthMonitor;
  unready?: boolean;
  /**
   * Whether its endpoint is in the store, as the last endpoint write that landed left it
   * (undefined: unknown, after a new lease). The timer pass writes only where this differs from
   * what the dyno should be, so a write that failed is made again and one that is in sync costs nothing.
   */
  published?: boolean;
  /** Its endpoint writes, one after another: they land in the order they were decided, so `published` follows the store. */
  endpointWrites?: Promise<unknown>;
  /** A timer pass's endpoint write is under way: the next pass does not queue another. */
  syncing?: boolean;
}

const dynoName = (u: UnitAssignment): string => `${u.type}.${u.index}`;
/** Only web dynos listen on $PORT and are published. */
const webPort = (d: Dyno): number | undefined => (d.unit.type === 'web' ? d.attachment?.port : undefined);
const MAX_PARALLEL_STARTS = 8;
/** The default bound on a dyno's startup checks, whatever app.json asks for (within its limits they could take hours). */
const STARTUP_TIMEOUT_MS = 10 * 60_000;
/** Up this long, a dyno's next crash is treated as a first one again. */
const STABLE_MS = 60_000;
/** The first retry of a stopping dyno's endpoint removal the store did not answer; doubled up to 5 s. */
const UNPUBLISH_RETRY_MS = 200;

/**
 * fleet's agent: registers its machine under a lease, then reconciles the units assigned to it
 * against the dynos it runs — on every change to its assignments and on a timer — starting,
 * health-checking, publishing (under the same lease, so a dead machine's endpoints vanish with it),
 * restarting crashed dynos with backoff, and stopping what is no longer assigned.
 */
export class Agent {
  private registration: Registration | undefined;
  private loop: ControlLoop | undefined;
  private readonly dynos = new Map<string, Dyno>();
  /** The units assigned here, by unit key: fed by the watch, read in full only by `load`. */
  private readonly assigned = new Map<string, UnitAssignment>();
  private stopped = false;
  private starting = 0;
  private readonly inFlight = new Set<Promise<void>>();
  /** A pass when each crash backoff ends: the 5 s timer pass alone would round every backoff up to it. */
  private readonly backoffs = new Set<NodeJS.Timeout>();
  /** Ends the waits between a stop's endpoint removal retries: once the agent stops they give up. */
  private readonly wakers = new Set<() => void>();
  /**
   * Stopped dynos' attachments whose endpoint removal the store never confirmed before the agent
   * stopped: released only after the lease's revocation has taken the endpoint with it.
   */
  private readonly unreleased: Attachment[] = [];

  /** Dyno lines past the app's rate stop here, and reading the dyno's output pauses. */
  private readonly logRate = new LogRateLimiter({}, (appId, message) => this.o.appLog(appId, 'berth', LOGPLEX_DYNO, message));

  constructor(private readonly o: AgentOptions) {}

  async start(): Promise<void> {
    const { store, machine } = this.o;
    this.registration = await Registration.start({
      store,
      log: this.o.log,
      ttl: this.o.ttl ?? 5,
      // Our registration and endpoints go with the lease: a new one gets them all again, or the
      // scheduler would move every unit away.
      register: (lease) => this.register(lease),
    });
    const prefix = keys.unitsOn(machine.id);
    this.loop = new ControlLoop({
      store,
      log: this.o.log,
      prefix,
      load: async () => {
        const r = await store.range(prefix, { prefix: true });
        const units = decodeAll(codecs.unit, r.kvs, (key) => this.o.log.warn({ key }, 'ignoring a malformed unit'));
        return {
          revision: r.revision,
          commit: () => {
            this.assigned.clear();
            for (const e of units) this.assigned.set(e.key.slice(prefix.length), e.value);
          },
        };
      },
      apply: (batch) => this.applyAssignments(prefix, batch),
      pass: () => this.reconcileOnce(),
      debounceMs: 5,
      maxWaitMs: 100,
      resyncMs: this.o.reconcileMs ?? 5000,
      repairMs: this.o.repairMs ?? 60_000,
    });
    await this.loop.start();
  }

  private async register(lease: string): Promise<void> {
    const { store, machine } = this.o;
    await put(store, keys.machine(machine.id), codecs.machine, { ...machine, agent_version: '0.1.0', registered_at: new Date().toISOString() }, { lease });
    // What was published went with the old lease; what the writes below leave, the timer pass checks.
    for (const d of this.dynos.values()) d.published = undefined;
    for (const d of this.dynos.values()) {
      // A unit taken away while the lease was lost is about to stop: it is not announced again.
      if (d.state !== 'up' || !this.assigned.has(unitKey(d.unit))) continue;
      if (!d.unready) await this.publish(d, lease);
      if (d.release) await this.status(d, 'up', d.release, undefined, lease);
      // A stop that began meanwhile may already have unpublished and forgotten it: take back what
      // we just wrote, or a stopped dyno would stay published and `up` (its lease is alive). A
      // crash restart meanwhile writes its own status and endpoint, so it is left alone.
      if ((d.state as Dyno['state']) === 'stopping' || this.dynos.get(unitKey(d.unit)) !== d) await this.forget(d, lease);
    }
  }

  private applyAssignments(prefix: string, batch: WatchBatch): boolean {
    for (const e of batch.events) {
      const key = e.kv.key.slice(prefix.length);
      const unit = e.type === 'put' ? decodeAll(codecs.unit, [e.kv])[0]?.value : undefined;
      if (unit) this.assigned.set(key, unit);
      else this.assigned.delete(key);
    }
    return true;
  }

  /** A pass soon; passes are serialised and merge, each idempotent. */
  reconcile(): Promise<void> {
    return this.loop?.kick() ?? Promise.resolve();
  }

  private async reconcileOnce(): Promise<void> {
    if (this.stopped) return;
    const assigned = [...this.assigned.values()];
    const wanted = new Set(assigned.map((u) => unitKey(u)));
    // Starts and stops run side by side (a stop waits on routers and a 30 s grace, a start on a
    // boot): one slow dyno must not hold up the rest. Starts are bounded so 70 new dynos do not
    // unpack 70 slugs at once; each finished start asks for another pass.
    for (const [key, d] of this.dynos) {
      if (!wanted.has(key) && d.state !== 'stopping') this.track(this.stopDyno(d, 'no longer assigned here'));
      // A readiness change or an exit whose endpoint write failed is put right here, or a healthy
      // dyno would stay unpublished (or a dead one published) until something else changed.
      else this.syncEndpoint(d);
    }
    for (const u of assigned) {
      if (this.starting >= MAX_PARALLEL_STARTS) break;
      const d = this.dynos.get(unitKey(u));
      if (!d) this.launch({ unit: u, attachment: undefined, running: undefined, state: 'starting', restarts: 0, failures: 0, nextStart: 0, upSince: 0, createdAt: new Date().toISOString(), generation: 0, published: false });
      else if (d.state === 'crashed' && !d.running && Date.now() >= d.nextStart) this.launch(d);
    }
  }

  /**
   * One endpoint write if the store does not hold what the dyno should be: published while it is
   * up and ready, not otherwise. A stop unpublishes by itself and is left alone.
   */
  private syncEndpoint(d: Dyno): void {
    if (d.state === 'stopping' || d.syncing || webPort(d) === undefined) return;
    const want = d.state === 'up' && !d.unready;
    if (d.published === want) return;
    d.syncing = true;
    const write = (want ? this.publish(d) : this.unpublish(d).then(() => undefined))
      .catch((err: unknown) => this.o.log.warn({ unit: d.unit.name, err: errorMessage(err) }, want ? 'could not publish the dyno' : 'could not unpublish the dyno'))
      .finally(() => (d.syncing = false));
    this.track(write);
  }

  private launch(d: Dyno): void {
    this.starting++;
    const start = this.startDyno(d).finally(() => {
      this.starting--;
      if (d.starting === start) d.starting = undefined;
      this.loop?.request();
    });
    d.starting = start;
    this.track(start);
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async startDyno(d: Dyno): Promise<void> {
    const u = d.unit;
    const log = this.o.log.child({ app: u.appName, unit: u.name, release: u.release });
    this.dynos.set(unitKey(u), d);
    d.state = 'starting';
    d.generation++;
    const generation = d.generation;
    // A stop (or newer start) can land while this one awaits: it then owns the dyno, and this one
    // must neither write its status nor leave a process behind.
    const stale = (): boolean => d.generation !== generation;
    // Whatever an earlier attempt's exit said is not this attempt's story.
    d.exitReason = undefined;
    let release: ReleaseRecord | undefined;
    try {
      release = this.o.release ? await this.o.release(u.appId, u.release) : (await get(this.o.store, keys.release(u.appId, u.release), codecs.release))?.value;
      if (!release) throw new Error(`release v${u.release} is missing`);
      d.release = release;
      const command = release.process_types[u.type];
      if (!command || !release.slug_id) throw new Error(`release v${u.release} has no ${u.type} process`);
      // The app's uid, the same on every machine and for its builds (allocated on first use).
      const uid = this.o.uidOf ? await this.o.uidOf(u.appId) : await allocateUid(this.o.store, u.appId);
      if (stale()) return;
      if (!d.attachment) {
        const attachment = await this.o.network.attachDyno({ appId: u.appId, group: uid, owner: unitKey(u) });
        // A stop that began meanwhile found no attachment to release: this start does it.
        if (stale()) return void (await this.releaseNetwork(attachment, log));
        d.attachment = attachment;
      }
      const net = d.attachment;
      const port = webPort(d);
      await this.status(d, 'starting', release);
      this.o.appLog(u.appId, 'berth', dynoName(u), `Starting process with command \`${command}\``);
      d.running = await this.o.runtime.start({
        id: `${u.name}-v${u.release}-${randomUUID().slice(0, 8)}`,
        appId: u.appId,
        uid,
        dyno: dynoName(u),
        command,
        slugPath: await this.o.slugPath(release.slug_id),
        // The platform's variables (HEROKU_PRIVATE_IP) win over config vars of the same name.
        env: { ...release.config, ...net.env },
        ...(port !== undefined ? { port } : {}),
        ...(net.netns !== undefined ? { netns: net.netns } : {}),
        ...(net.resolvConf !== undefined ? { resolvConf: net.resolvConf } : {}),
        memoryBytes: u.memoryBytes,
        ...(u.diskBytes !== undefined ? { diskBytes: u.diskBytes } : {}),
        pidsMax: 512,
        onOutput: (_stream, line) => this.logRate.admit(u.appId) && (this.o.appLog(u.appId, 'app', dynoName(u), line), true),
      });
      const running = d.running;
      if (stale()) {
        await running.stop(1000).catch(() => undefined);
        return;
      }
      const started = release;
      void running.exited.then((exit) => this.onExit(d, generation, exit, started));
      const gone = (): boolean => d.generation !== generation || !d.running;
      if (port !== undefined) await waitForPort(net.address, port, this.o.bootTimeoutMs ?? 60_000, gone);
      // An app may open its port before it can serve: its startup checks decide when it is up.
      const checks = port !== undefined ? await readHealthChecks(this.o.store, u.appId, release.slug_id, u.type, log) : [];
      if (port !== undefined && !stale()) await runStartupChecks(net.address, port, checks, { abandon: gone, deadlineMs: this.o.startupTimeoutMs ?? STARTUP_TIMEOUT_MS, say: (line) => this.o.appLog(u.appId, 'berth', dynoName(u), line) });
      if (stale()) return;
      // What the last generation's checks said is not this one's: its own monitor starts ready.
      d.unready = false;
      d.state = 'up';
      d.upSince = Date.now();
      await this.status(d, 'up', release);
      if (stale()) return void (await this.forget(d));
      // A store that fails this write does not fail a healthy dyno: the next timer pass publishes it.
      await this.publish(d).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'could not publish the dyno; the next pass tries again'));
      // A stop that landed during the write has already unpublished: take back what we just wrote,
      // or the router would keep sending traffic to an address the next dyno may get.
      if (stale()) return void (await this.forget(d));
      this.o.appLog(u.appId, 'berth', dynoName(u), 'State changed from starting to up');
      log.info({ address: net.address, port }, 'dyno up');
      if (port !== undefined) this.watch(d, generation, checks.filter((c) => c.type !== 'startup'), net.address, port, started);
    } catch (err) {
      if (stale()) return;
      const exited = d.exitReason;
      d.exitReason = undefined;
      const why = exited ?? `Error R10 (Boot failure) -> ${errorMessage(err)}`;
      log.warn({ err: why }, 'dyno failed to start');
      if (!exited) this.o.appLog(u.appId, 'berth', dynoName(u), why);
      await d.running?.stop(1000).catch(() => undefined);
      // Our own kill's exit is not news.
      d.exitReason = undefined;
      if (stale()) return;
      this.crashed(d, why);
      // `berth ps` and the rollout (which marks a release failed) read the reason from here.
      if (release) await this.status(d, 'crashed', release, why).catch(() => undefined);
    }
  }

  private async onExit(d: Dyno, generation: number, exit: { code: number | null; oomKilled: boolean }, release: ReleaseRecord): Promise<void> {
    if (d.generation !== generation || d.state === 'stopping') return;
    const u = d.unit;
    d.running = undefined;
    d.monitor?.stop();
    const why = exit.oomKilled ? 'Error R15 (Memory quota vastly exceeded) -> killed at its memory limit' : `Process exited with status ${exit.code}`;
    this.o.appLog(u.appId, 'berth', dynoName(u), why);
    // Still booting: the start notices the exit and records the crash itself, with this reason.
    if (d.state === 'starting') {
      d.exitReason = why;
      return;
    }
    await this.unpublish(d);
    // A stop may have begun while we unpublished (TS cannot see the await change d.state).
    if (d.generation !== generation || (d.state as Dyno['state']) === 'stopping') return;
    this.crashed(d, why);
    await this.status(d, 'crashed', release, why);
  }

  /** Exponential backoff from 1 s (`crashBackoffMs`), capped at 5 min, as Heroku's crash restarts. */
  private crashed(d: Dyno, reason: string): void {
    // A dyno that ran fine for a while and then crashed starts its backoff over, as on Heroku.
    if (d.upSince > 0 && Date.now() - d.upSince > STABLE_MS) d.failures = 0;
    d.upSince = 0;
    d.failures++;
    d.state = 'crashed';
    d.running = undefined;
    d.restarts++;
    d.nextStart = Date.now() + Math.min(300_000, (this.o.crashBackoffMs ?? 1000) * 2 ** Math.min(d.failures - 1, 9));
    const timer = setTimeout(() => {
      this.backoffs.delete(timer);
      this.loop?.request();
    }, d.nextStart - Date.now());
    this.backoffs.add(timer);
    this.o.log.info({ unit: d.unit.name, reason, restartInMs: d.nextStart - Date.now() }, 'dyno crashed');
  }

  /**
   * Liveness and readiness checks while the dyno is up: a failing one unpublishes it until it
   * passes again; a liveness check failing `attempts` times in a row restarts it like a crash.
   */
  private watch(d: Dyno, generation: number, checks: HealthCheck[], address: string, port: number, release: ReleaseRecord): void {
    d.unready = false;
    if (checks.length === 0) return;
    const say = (line: string): void => this.o.appLog(d.unit.appId, 'berth', dynoName(d.unit), line);
    const current = (): boolean => d.generation === generation && d.state === 'up';
    d.monitor = new HealthMonitor(address, port, checks, {
      ready: (ok, line) => {
        if (!current()) return;
        d.unready = !ok;
        say(line);
        // A write that fails here is made again by the next timer pass (syncEndpoint).
        void (ok ? this.publish(d) : this.unpublish(d)).catch(() => undefined);
      },
      dead: (why) => {
        const running = d.running;
        if (!current() || !running) return;
        // This generation's exit is ours: its handler stands down, and the restart comes from here.
        d.generation++;
        d.unready = true;
        say(`${why}: restarting`);
        this.track((async () => {
          await this.unpublish(d).catch(() => undefined);
          await running.stop(10_000).catch(() => undefined);
          if (d.state !== 'up') return;
          say('State changed from up to crashed');
          this.crashed(d, why);
          await this.status(d, 'crashed', release, why).catch(() => undefined);
        })());
      },
    });
    d.monitor.start();
  }

  private async stopDyno(d: Dyno, why: string): Promise<void> {
    d.state = 'stopping';
    d.generation++;
    d.monitor?.stop();
    const log = this.o.log.child({ unit: d.unit.name });
    const unpublished = await this.unpublishSurely(d, log);
    // No router may still send it traffic when it stops: wait until they have all applied the
    // removal (bounded, so a wedged router cannot pin a dyno).
    if (unpublished) await waitForRouters(this.o.store, unpublished, { log });
    this.o.appLog(d.unit.appId, 'berth', dynoName(d.unit), `Stopping process (${why})`);
    await d.running?.stop(30_000).catch(() => undefined);
    this.dynos.delete(unitKey(d.unit));
    // A start that was under way may still be starting a process in the namespace: it sees the
    // stop and ends that process first. (One still attaching releases what it gets itself.)
    await d.starting?.catch(() => undefined);
    // Endpoint first, report last: what a start (or a new lease's registration) raced into the
    // store after the stop began goes too, and its own take-back may have failed.
    const removed = await this.unpublishSurely(d, log);
    await this.deleteOwn(keys.status(unitKey(d.unit)), this.registration?.leaseId);
    const attachment = d.attachment;
    d.attachment = undefined;
    if (!attachment) return;
    // An endpoint that may still be in the store routes to this address: handed to the next dyno
    // (maybe another app's), it would get this one's traffic. Only the agent stopping gets here
    // with the removal unconfirmed; its lease's revocation takes the endpoint, then this goes.
    if (removed === undefined) this.unreleased.push(attachment);
    else await this.releaseNetwork(attachment, log, d.unpublishedAt);
  }

  /**
   * Removes a stopping dyno's endpoint, again and again with backoff until the store answers, or
   * until the agent stops. Returns what `unpublish` does; undefined only if the agent stopped first.
   */
  private async unpublishSurely(d: Dyno, log: Logger): Promise<number | undefined> {
    for (let delay = UNPUBLISH_RETRY_MS; ; delay = Math.min(delay * 2, 5000)) {
      const revision = await this.unpublish(d);
      if (revision !== undefined || this.stopped) return revision;
      log.warn({ retryInMs: delay }, 'could not remove the endpoint of a stopping dyno; retrying');
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.wakers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, delay);
        this.wakers.add(wake);
      });
    }
  }

  /** Never throws: a namespace that will not go must not keep a stop from finishing. */
  private async releaseNetwork(attachment: Attachment, log: Logger, after?: number): Promise<void> {
    await attachment.release(after ? { after } : undefined).catch((err: unknown) => log.warn({ address: attachment.address, err: errorMessage(err) }, 'could not release the dyno\'s network'));
  }

  /** Endpoint first, report last: what a start raced into the store after a stop began goes too. */
  private async forget(d: Dyno, lease = this.registration?.leaseId): Promise<void> {
    await this.unpublish(d, lease);
    await this.deleteOwn(keys.status(unitKey(d.unit)), lease);
  }

  /**
   * Deletes a key only while it is this agent's (written under its lease). A unit's endpoint and
   * status keys are named for the unit, not the machine: after a failover the same keys belong to
   * the machine that took the unit over, and an agent coming back must not delete them.
   */
  private async deleteOwn(key: string, lease: string | undefined): Promise<number | undefined> {
    // Without a lease this agent holds no key: whatever it wrote went with the lost one.
    if (!lease) return 0;
    const r = await this.o.store.txn({ compare: [{ key, target: 'lease', op: '=', value: lease }], success: [{ type: 'delete', key }] }).catch(() => undefined);
    // The store did not answer: the key may well still be there.
    if (!r) return undefined;
    const del = r.succeeded ? r.results[0] : undefined;
    return del?.type === 'delete' && del.deleted > 0 ? r.revision : 0;
  }

  private async publish(d: Dyno, lease = this.registration?.leaseId): Promise<void> {
    const port = webPort(d);
    if (port === undefined || !d.attachment || !lease) return;
    const op = putOp(keys.service(d.unit.appName, unitKey(d.unit)), codecs.endpoint, `${d.attachment.address}:${port}`, lease);
    await this.inOrder(d, async () => {
      if (await this.writeIfAssigned(d, op)) d.published = true;
    });
  }

  /** Runs a dyno's endpoint writes one after another, so `published` says what the last one left in the store. */
  private inOrder<T>(d: Dyno, write: () => Promise<T>): Promise<T> {
    const next = (d.endpointWrites ?? Promise.resolve()).then(write);
    d.endpointWrites = next.catch(() => undefined);
    return next;
  }

  /**
   * Writes a unit's endpoint or status only while the store still assigns the unit here: the
   * store decides, not this agent's cache of its assignments, which lags after a partition — and
   * by then another machine may own these keys for the same unit.
   */
  private async writeIfAssigned(d: Dyno, op: TxnOp): Promise<boolean> {
    return (await this.o.store.txn({ compare: [{ key: keys.unit(this.o.machine.id, unitKey(d.unit)), target: 'version', op: '>', value: 0 }], success: [op] })).succeeded;
  }

  /** Returns the revision of the removal (0 if nothing of ours was published; undefined if the store did not answer). */
  private unpublish(d: Dyno, lease = this.registration?.leaseId): Promise<number | undefined> {
    return this.inOrder(d, async () => {
      const revision = await this.deleteOwn(keys.service(d.unit.appName, unitKey(d.unit)), lease);
      if (revision === undefined) return undefined;
      d.published = false;
      d.unpublishedAt = Math.max(d.unpublishedAt ?? 0, revision);
      return revision;
    });
  }

  private async status(d: Dyno, state: DynoState, release: ReleaseRecord, reason?: string, lease = this.registration?.leaseId): Promise<void> {
    const u = d.unit;
    const value = dynoStatus(u, { state, reason: reason ?? null, restarts: d.restarts, command: release.process_types[u.type] ?? '', release: { id: release.id, version: release.version }, machine: this.o.machine.id, port: webPort(d) ?? null, address: d.attachment?.address ?? null, createdAt: d.createdAt });
    // Never without a lease: such a report would outlive this machine. The next registration
    // writes the reports of the dynos that are up again.
    if (!lease) return;
    await this.writeIfAssigned(d, putOp(keys.status(unitKey(u)), codecs.status, value, lease));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const wake of [...this.wakers]) wake();
    for (const t of this.backoffs) clearTimeout(t);
    this.backoffs.clear();
    // Queued passes are dropped; only one that is running is waited for.
    await this.loop?.stop();
    // Stops first: they make booting dynos' starts stale, so those give up at once instead of
    // holding the shutdown for a whole boot timeout; then whatever is still running finishes.
    await Promise.allSettled([...this.dynos.values()].filter((d) => d.state !== 'stopping').map((d) => this.stopDyno(d, 'agent stopping')));
    await Promise.allSettled([...this.inFlight]);
    // Its pending L10 lines go out now, before the link closes; no timer of it fires later.
    this.logRate.close();
    await this.registration?.stop();
    await Promise.all(this.unreleased.splice(0).map((a) => this.releaseNetwork(a, this.o.log)));
  }
}
