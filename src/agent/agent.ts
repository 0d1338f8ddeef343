import { randomUUID } from 'node:crypto';
import { decodeAll, get, put } from '../domain/codec.js';
import { codecs, type ReleaseRecord } from '../domain/records.js';
import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import { unitKey, type MachineInfo, type UnitSpec } from '../domain/units.js';
import { waitForRouters } from '../domain/routers.js';
import type { Logger } from '../domain/log.js';
import { ControlLoop, Registration } from '../loop/index.js';
import type { Attachment } from '../network/index.js';
import { allocateUid } from '../sandbox/index.js';
import type { WatchBatch } from '../store/index.js';
import { LOGPLEX_DYNO, LogRateLimiter } from './log-limiter.js';
import { waitForPort } from './ports.js';
import { HealthMonitor, readHealthChecks, runStartupChecks } from './health.js';
import type { HealthCheck } from '../domain/records/health.js';
import { dynoName, webPort, type Dyno } from './dyno.js';
import { DynoRecords } from './endpoints.js';
import type { AgentOptions } from './options.js';

export type { MachineInfo, AgentOptions };

/** What the scheduler writes at /berth/units/<machine>/<unit>@v<n>. */
export type UnitAssignment = UnitSpec;

const MAX_PARALLEL_STARTS = 8;
/** The default bound on a dyno's startup checks, whatever app.json asks for (within its limits they could take hours). */
const STARTUP_TIMEOUT_MS = 10 * 60_000;
/** Up this long, a dyno's next crash is treated as a first one again. */
const STABLE_MS = 60_000;

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
  /**
   * Stopped dynos' attachments whose endpoint removal the store never confirmed before the agent
   * stopped: released only after the lease's revocation has taken the endpoint with it.
   */
  private readonly unreleased: Attachment[] = [];

  /** Dyno lines past the app's rate stop here, and reading the dyno's output pauses. */
  private readonly logRate = new LogRateLimiter({}, (appId, message) => this.o.appLog(appId, 'berth', LOGPLEX_DYNO, message));

  /** Its dynos' endpoints and status reports, written under the current lease. */
  private readonly records: DynoRecords;

  constructor(private readonly o: AgentOptions) {
    this.records = new DynoRecords({ store: o.store, log: o.log, machineId: o.machine.id, lease: () => this.registration?.leaseId });
  }

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
      if (!d.unready) await this.records.publish(d, lease);
      if (d.release) await this.records.status(d, 'up', d.release, undefined, lease);
      // A stop that began meanwhile may already have unpublished and forgotten it: take back what
      // we just wrote, or a stopped dyno would stay published and `up` (its lease is alive). A
      // crash restart meanwhile writes its own status and endpoint, so it is left alone.
      if ((d.state as Dyno['state']) === 'stopping' || this.dynos.get(unitKey(d.unit)) !== d) await this.records.forget(d, lease);
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
      else {
        const write = this.records.sync(d);
        if (write) this.track(write);
      }
    }
    for (const u of assigned) {
      if (this.starting >= MAX_PARALLEL_STARTS) break;
      const d = this.dynos.get(unitKey(u));
      if (!d) this.launch({ unit: u, attachment: undefined, running: undefined, state: 'starting', restarts: 0, failures: 0, nextStart: 0, upSince: 0, createdAt: new Date().toISOString(), generation: 0, published: false });
      else if (d.state === 'crashed' && !d.running && Date.now() >= d.nextStart) this.launch(d);
    }
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
      await this.records.status(d, 'starting', release);
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
      await this.records.status(d, 'up', release);
      if (stale()) return void (await this.records.forget(d));
      // A store that fails this write does not fail a healthy dyno: the next timer pass publishes it.
      await this.records.publish(d).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'could not publish the dyno; the next pass tries again'));
      // A stop that landed during the write has already unpublished: take back what we just wrote,
      // or the router would keep sending traffic to an address the next dyno may get.
      if (stale()) return void (await this.records.forget(d));
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
      if (release) await this.records.status(d, 'crashed', release, why).catch(() => undefined);
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
    await this.records.unpublish(d);
    // A stop may have begun while we unpublished (TS cannot see the await change d.state).
    if (d.generation !== generation || (d.state as Dyno['state']) === 'stopping') return;
    this.crashed(d, why);
    await this.records.status(d, 'crashed', release, why);
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
        // A write that fails here is made again by the next timer pass (`DynoRecords.sync`).
        void (ok ? this.records.publish(d) : this.records.unpublish(d)).catch(() => undefined);
      },
      dead: (why) => {
        const running = d.running;
        if (!current() || !running) return;
        // This generation's exit is ours: its handler stands down, and the restart comes from here.
        d.generation++;
        d.unready = true;
        say(`${why}: restarting`);
        this.track((async () => {
          await this.records.unpublish(d).catch(() => undefined);
          await running.stop(10_000).catch(() => undefined);
          if (d.state !== 'up') return;
          say('State changed from up to crashed');
          this.crashed(d, why);
          await this.records.status(d, 'crashed', release, why).catch(() => undefined);
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
    const unpublished = await this.records.unpublishSurely(d, log);
    // No router may still send it traffic when it stops: wait until they have all applied the
    // removal (bounded, so a wedged router cannot pin a dyno).
    if (unpublished) await waitForRouters(this.o.store, unpublished, { log });
    this.o.appLog(d.unit.appId, 'berth', dynoName(d.unit), `Stopping process (${why})`);
    await d.running?.stop(30_000).catch(() => undefined);
    try {
      await this.finishStop(d, log);
    } finally {
      // Only now: a unit assigned here again meanwhile must not get a new dyno whose endpoint and
      // status this stop's late deletes (same keys, same lease) would then take away.
      if (this.dynos.get(unitKey(d.unit)) === d) this.dynos.delete(unitKey(d.unit));
      this.loop?.request();
    }
  }

  private async finishStop(d: Dyno, log: Logger): Promise<void> {
    // A start that was under way may still be starting a process in the namespace: it sees the
    // stop and ends that process first. (One still attaching releases what it gets itself.)
    await d.starting?.catch(() => undefined);
    // Endpoint first, report last: what a start (or a new lease's registration) raced into the
    // store after the stop began goes too, and its own take-back may have failed.
    const removed = await this.records.unpublishSurely(d, log);
    await this.records.deleteOwn(keys.status(unitKey(d.unit)), this.registration?.leaseId);
    const attachment = d.attachment;
    d.attachment = undefined;
    if (!attachment) return;
    // An endpoint that may still be in the store routes to this address: handed to the next dyno
    // (maybe another app's), it would get this one's traffic. Only the agent stopping gets here
    // with the removal unconfirmed; its lease's revocation takes the endpoint, then this goes.
    if (removed === undefined) this.unreleased.push(attachment);
    else await this.releaseNetwork(attachment, log, d.unpublishedAt);
  }

  /** Never throws: a namespace that will not go must not keep a stop from finishing. */
  private async releaseNetwork(attachment: Attachment, log: Logger, after?: number): Promise<void> {
    await attachment.release(after ? { after } : undefined).catch((err: unknown) => log.warn({ address: attachment.address, err: errorMessage(err) }, 'could not release the dyno\'s network'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.records.stop();
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
