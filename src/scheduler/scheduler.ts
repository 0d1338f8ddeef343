import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import { routersCaughtUp } from '../domain/routers.js';
import type { Logger } from '../domain/log.js';
import { Election, LeaseKeeper, follow, type Following, type Leadership, type Store, type TxnOp } from '../store/index.js';
import { plan } from './placement.js';
import { failRelease, failedRollouts, type UnitStatus } from './rollout.js';
import { compareGeneration, unitKey } from '../domain/units.js';
import type { Assignment, Plan } from './types.js';
import { readState } from './view.js';


const PREFIXES = ['/berth/apps/', '/berth/app-names/', '/berth/machines/', '/berth/units/', '/berth/status/'];

export interface SchedulerOptions {
  store: Store;
  log: Logger;
  /** This candidate's name in the election (a node id). */
  id: string;
  ttl?: number;
  reconcileMs?: number;
  debounceMs?: number;
}

/**
 * fleet's engine: any number run, one leads (store election under a lease; a dead leader is
 * replaced within one TTL). The leader reads the state, asks the pure `plan` what should change,
 * and writes assignments — every write fenced on its leadership, so a deposed leader writes nothing.
 * Old-release units are removed only once their replacement reports up (the rollout handshake;
 * routers join it when they exist).
 */
export class Scheduler {
  private keeper: LeaseKeeper | undefined;
  private leadership: Leadership | undefined;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private pass: Promise<void> = Promise.resolve();
  private following: Following | undefined;

  constructor(private readonly o: SchedulerOptions) {}

  get isLeader(): boolean {
    return this.leadership !== undefined;
  }

  async start(): Promise<void> {
    this.keeper = await LeaseKeeper.start(this.o.store, {
      ttl: this.o.ttl ?? 5,
      onLost: () => {
        this.o.log.warn('scheduler lease lost; campaigning again');
        this.leadership = undefined;
        void this.restart();
      },
    });
    void this.campaign(this.keeper.id);
  }

  /** After a lease loss (a store outage, a stall): keep trying, never take the process down. */
  private async restart(): Promise<void> {
    this.following?.close();
    for (let delay = 200; !this.abort.signal.aborted; delay = Math.min(delay * 2, 5000)) {
      try {
        await this.start();
        return;
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err) }, 'scheduler could not rejoin; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async campaign(lease: string): Promise<void> {
    try {
      this.leadership = await new Election(this.o.store, keys.leader('scheduler')).campaign(lease, this.o.id, this.abort.signal);
      this.o.log.info({ id: this.o.id }, 'elected scheduler leader');
      const from = (await this.o.store.currentRevision()) + 1;
      // One watch; only changes to what a plan reads start a pass.
      this.following = follow(this.o.store, '/berth/', from, {
        onBatch: (batch) => {
          if (!batch.events.some((e) => PREFIXES.some((p) => e.kv.key.startsWith(p)))) return;
          clearTimeout(this.debounce);
          this.debounce = setTimeout(() => void this.kick(), this.o.debounceMs ?? 50);
        },
        onGap: () => this.o.store.currentRevision(),
      });
      this.timer ??= setInterval(() => void this.kick(), this.o.reconcileMs ?? 2000);
      void this.kick();
    } catch (err) {
      if (!this.abort.signal.aborted) this.o.log.warn({ err: errorMessage(err) }, 'campaign ended');
    }
  }

  /** Runs a scheduling pass after the current one; passes never overlap. */
  kick(): Promise<void> {
    this.pass = this.pass.then(() => this.schedule()).catch((err: unknown) => this.o.log.error({ err: errorMessage(err) }, 'scheduling pass failed'));
    return this.pass;
  }

  private async schedule(): Promise<void> {
    const leadership = this.leadership;
    if (!leadership || this.abort.signal.aborted) return;
    const state = await readState(this.o.store);
    const p = plan(state);
    const ops: TxnOp[] = [];
    for (const a of p.place) ops.push({ type: 'put', key: keys.unit(a.machine, unitKey(a.unit)), value: JSON.stringify(a.unit) });
    for (const a of p.remove) ops.push({ type: 'delete', key: keys.unit(a.machine, unitKey(a.unit)) });
    // A superseded unit goes once the unit replacing it (same name, newer release) is up.
    const statuses = new Map<string, UnitStatus>();
    for (const kv of (await this.o.store.range(keys.statuses(), { prefix: true })).kvs) {
      try {
        statuses.set(kv.key.slice(keys.statuses().length), JSON.parse(kv.value) as UnitStatus);
      } catch {
        // One malformed report must not stop scheduling.
      }
    }
    // A rollout whose new dynos only crash is given up: the previous release becomes current again
    // and the next pass (the txn's own watch event) plans from there.
    let failedAny = false;
    for (const f of failedRollouts(state.apps, state.assignments, p, statuses)) {
      if (await failRelease(this.o.store, leadership, f)) {
        failedAny = true;
        this.o.log.warn({ app: f.app.name, release: f.version, reason: f.reason }, 'release failed; the previous release keeps serving');
      }
    }
    if (failedAny) return;
    const up = new Set([...statuses].filter(([, st]) => st.state === 'up').map(([k]) => k));
    for (const old of p.superseded) {
      const replacement = state.assignments.find((a) => a.unit.appId === old.unit.appId && a.unit.name === old.unit.name && compareGeneration(a.unit, old.unit) > 0);
      if (!replacement || !up.has(unitKey(replacement.unit))) continue;
      // A web replacement must also be published and reach every router before the old one goes.
      if (replacement.unit.type === 'web') {
        const published = await this.o.store.get(keys.service(replacement.unit.appName, unitKey(replacement.unit)));
        if (!published || !(await routersCaughtUp(this.o.store, published.modRevision))) continue;
      }
      ops.push({ type: 'delete', key: keys.unit(old.machine, unitKey(old.unit)) });
    }
    const reports = this.pendingReports(p, statuses);
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
  private pendingReports(p: Plan, statuses: Map<string, UnitStatus>): { puts: TxnOp[]; deletes: TxnOp[] } {
    const puts: TxnOp[] = [];
    const deletes: TxnOp[] = [];
    const pending = new Map(p.pending.map((pu) => [unitKey(pu.unit), pu]));
    for (const [key, pu] of pending) {
      const current = statuses.get(key);
      if (current && (current.state !== 'pending' || current.reason === pu.reason)) continue;
      this.o.log.warn({ unit: pu.unit.name, reason: pu.reason }, 'unit pending');
      const u = pu.unit;
      const value = { app_id: u.appId, unit: key, name: `${u.type}.${u.index}`, type: u.type, state: 'pending', reason: pu.reason, restarts: 0, command: '', release: { version: u.release }, machine: null, port: null };
      puts.push({ type: 'put', key: keys.status(key), value: JSON.stringify(value), ...(this.keeper ? { lease: this.keeper.id } : {}) });
    }
    for (const [key, st] of statuses) if (st.state === 'pending' && !pending.has(key)) deletes.push({ type: 'delete', key: keys.status(key) });
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
        this.leadership = undefined;
        return;
      }
    }
    this.o.log.info({ changes: ops.length }, 'assignments updated');
  }

  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    this.following?.close();
    await this.pass;
    await this.leadership?.resign().catch(() => undefined);
    await this.keeper?.revoke().catch(() => undefined);
  }
}

export type { Assignment };
