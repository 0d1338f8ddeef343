import { putOp, deleteOp } from '../domain/codec.js';
import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs } from '../domain/records.js';
import { compareGeneration, dynoStatus, unitKey } from '../domain/units.js';
import { ControlLoop, Registration } from '../loop/index.js';
import { Election, type Leadership, type Store, type TxnOp } from '../store/index.js';
import { Compactor } from './compaction.js';
import { plan } from './placement.js';
import { failRelease, failedRollouts } from './rollout.js';
import { ClusterState } from './state.js';
import type { Assignment, Plan } from './types.js';

export interface SchedulerOptions {
  store: Store;
  log: Logger;
  /** This candidate's name in the election (a node id). */
  id: string;
  ttl?: number;
  /** A pass from memory this often (default 10 s); the watch drives every other pass. */
  reconcileMs?: number;
  /** A full re-read of the cluster this often (default 5 min). */
  repairMs?: number;
  debounceMs?: number;
  /** Under steady writes a pass still runs at least this often (default 500 ms). */
  maxWaitMs?: number;
  /** The leader compacts the store's history this often (default 5 min; 0: never). */
  compactMs?: number;
}

/**
 * fleet's engine: any number run, one leads (store election under a lease; a dead leader is
 * replaced within one TTL). The leader keeps the cluster's state in memory from its watch
 * (`ClusterState`), asks the pure `plan` what should change, and writes assignments — every write
 * fenced on its leadership, so a deposed leader writes nothing. Old units are removed only once
 * their replacement is up, published and applied by every live router (the rollout handshake).
 */
export class Scheduler {
  private registration: Registration | undefined;
  private leadership: Leadership | undefined;
  private loop: ControlLoop | undefined;
  private state = new ClusterState();
  private readonly abort = new AbortController();
  /** The frozen apps last logged. */
  private frozenSaid = '[]';
  /** Bumped per lease: a campaign from an older lease must not start a loop. */
  private term = 0;
  /** Cuts the store's history while this node leads. */
  readonly compactor: Compactor;

  constructor(private readonly o: SchedulerOptions) {
    this.compactor = new Compactor({ store: o.store, log: o.log.child({ part: 'compactor' }), ...(o.compactMs !== undefined ? { intervalMs: o.compactMs } : {}) });
  }

  get isLeader(): boolean {
    return this.leadership !== undefined;
  }

  /** Passes run since this node last became leader (for tests and metrics). */
  get passes(): number {
    return this.loop?.passes.count ?? 0;
  }

  async start(): Promise<void> {
    this.registration = await Registration.start({
      store: this.o.store,
      log: this.o.log,
      ttl: this.o.ttl ?? 5,
      // Each lease campaigns anew; campaigning waits for as long as another node leads.
      register: async (lease) => void this.campaign(lease, ++this.term),
      onLost: () => void this.stepDown(),
    });
  }

  private async campaign(lease: string, term: number): Promise<void> {
    try {
      const leadership = await new Election(this.o.store, keys.leader('scheduler')).campaign(lease, this.o.id, this.abort.signal);
      if (term !== this.term || this.abort.signal.aborted) return;
      this.leadership = leadership;
      this.o.log.info({ id: this.o.id }, 'elected scheduler leader');
      this.compactor.start(leadership);
      // A new leader trusts nothing it knew before: it reads the cluster once, then follows it.
      this.state = new ClusterState();
      const state = this.state;
      this.loop = new ControlLoop({
        store: this.o.store,
        log: this.o.log,
        prefix: keys.all(),
        load: () => state.load(this.o.store),
        apply: (batch) => state.apply(batch),
        pass: () => this.schedule(state),
        debounceMs: this.o.debounceMs ?? 50,
        maxWaitMs: this.o.maxWaitMs ?? 500,
        resyncMs: this.o.reconcileMs ?? 10_000,
        repairMs: this.o.repairMs ?? 300_000,
      });
      await this.loop.start();
    } catch (err) {
      if (this.abort.signal.aborted || term !== this.term) return;
      this.o.log.warn({ err: errorMessage(err) }, 'campaign ended; campaigning again');
      // A leader that cannot read the cluster must not sit on the leadership: step down, retry.
      await this.stepDown()?.resign().catch(() => undefined);
      setTimeout(() => {
        if (term === this.term && !this.abort.signal.aborted) void this.campaign(lease, term);
      }, 1000);
    }
  }

  /** A pass now (merged with any waiting); for tests and the CLI. */
  kick(): Promise<void> {
    return this.loop?.kick() ?? Promise.resolve();
  }

  private async schedule(state: ClusterState): Promise<void> {
    const leadership = this.leadership;
    if (!leadership || this.abort.signal.aborted || state !== this.state) return;
    // Only apps whose current release just changed are read; the rest is in memory.
    await state.fillReleases(this.o.store);
    // An app a record of which cannot be read is left alone by the plan, not emptied; said once
    // per change, not once per pass.
    const frozen = state.frozen();
    const said = JSON.stringify([...frozen]);
    if (said !== this.frozenSaid && frozen.size > 0) this.o.log.warn({ apps: Object.fromEntries(frozen) }, 'records that cannot be read; those apps\' dynos are left as they are');
    this.frozenSaid = said;
    const view = state.view(undefined, frozen);
    const p = plan(view);
    const ops: TxnOp[] = [];
    for (const a of p.place) ops.push(putOp(keys.unit(a.machine, unitKey(a.unit)), codecs.unit, a.unit));
    for (const a of p.remove) ops.push(deleteOp(keys.unit(a.machine, unitKey(a.unit))));
    // A rollout whose new dynos only crash is given up: the previous release becomes current again
    // and the next pass (the txn's own watch event) plans from there.
    let failedAny = false;
    for (const f of failedRollouts(view.apps, view.assignments, p, state.statuses)) {
      if (await failRelease(this.o.store, leadership, f)) {
        failedAny = true;
        this.o.log.warn({ app: f.app.name, release: f.version, reason: f.reason }, 'release failed; the previous release keeps serving');
      }
    }
    if (failedAny) return;
    // A superseded unit goes once the unit replacing it (same name, newer generation) is up — and,
    // for web, published and applied by every live router.
    let waiting = false;
    for (const old of p.superseded) {
      const replacement = view.assignments.find((a) => a.unit.appId === old.unit.appId && a.unit.name === old.unit.name && compareGeneration(a.unit, old.unit) > 0);
      const ready = replacement && state.statuses.get(unitKey(replacement.unit))?.state === 'up' && (replacement.unit.type !== 'web' || state.publishedAndRouted(keys.service(replacement.unit.appName, unitKey(replacement.unit))));
      if (!ready) {
        waiting = true;
        continue;
      }
      ops.push(deleteOp(keys.unit(old.machine, unitKey(old.unit))));
    }
    // Endpoints and router reports start passes only while a handshake is pending.
    state.awaitingHandshake = waiting;
    const reports = this.pendingReports(p, state);
    // Stale pending reports go first: chunked writes then still delete them before any agent can
    // be told to run the unit and write its own report under that key.
    ops.unshift(...reports.deletes);
    ops.push(...reports.puts);
    if (ops.length === 0) return;
    await this.apply(leadership, ops);
  }

  /**
   * `berth ps` shows an unplaceable unit as pending with the plan's reason: a status the leader
   * writes under its own lease (so a dead leader's reports go with it) and deletes once the unit
   * is placed — before the placement lands, so it can never delete an agent's report.
   * Unchanged reports are not rewritten: this pass's own writes must not trigger another.
   */
  private pendingReports(p: Plan, state: ClusterState): { puts: TxnOp[]; deletes: TxnOp[] } {
    const puts: TxnOp[] = [];
    const deletes: TxnOp[] = [];
    const pending = new Map(p.pending.map((pu) => [unitKey(pu.unit), pu]));
    for (const [key, pu] of pending) {
      const current = state.statuses.get(key);
      if (current && (current.state !== 'pending' || current.reason === pu.reason)) continue;
      this.o.log.warn({ unit: pu.unit.name, reason: pu.reason }, 'unit pending');
      const value = dynoStatus(pu.unit, { state: 'pending', reason: pu.reason, restarts: 0, command: '', release: { version: pu.unit.release }, machine: null, port: null });
      puts.push(putOp(keys.status(key), codecs.status, value, this.registration?.leaseId));
    }
    for (const [key, st] of state.statuses) if (st.state === 'pending' && !pending.has(key)) deletes.push(deleteOp(keys.status(key)));
    return { puts, deletes };
  }

  /** Writes in chunks under etcd's txn limit, each fenced on the leadership still holding. */
  private async apply(leadership: Leadership, ops: TxnOp[]): Promise<void> {
    for (let i = 0; i < ops.length; i += 100) {
      const r = await this.o.store.txn({
        compare: [{ key: leadership.key, target: 'create', op: '=', value: leadership.revision }],
        success: ops.slice(i, i + 100),
      });
      if (!r.succeeded) {
        this.o.log.warn('no longer the scheduler leader; stopping writes');
        if (this.leadership === leadership) this.deposed();
        return;
      }
    }
    this.o.log.info({ changes: ops.length }, 'assignments updated');
  }

  /**
   * The fence refused a write while our lease lives on (the election key was deleted): stop
   * following the cluster and get back in line under the same lease — otherwise this node would
   * never lead again until its lease happened to be lost.
   */
  private deposed(): void {
    this.stepDown();
    const lease = this.registration?.leaseId;
    if (lease && !this.abort.signal.aborted) void this.campaign(lease, this.term);
  }

  /** Stops leading: no more passes, no more writes; returns the leadership that was held. */
  private stepDown(): Leadership | undefined {
    const leadership = this.leadership;
    this.leadership = undefined;
    this.compactor.stop();
    void this.loop?.stop();
    this.loop = undefined;
    return leadership;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.compactor.stop();
    await this.compactor.settled();
    await this.loop?.stop();
    await this.leadership?.resign().catch(() => undefined);
    await this.registration?.stop();
  }
}

export type { Assignment };
