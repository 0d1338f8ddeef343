import { randomInt } from 'node:crypto';
import { putOp, tryDecode } from '../../domain/codec.js';
import { BerthError, conflict, ErrorCode } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { RunRecord } from '../services/runs.js';

/**
 * How many one-off dynos an app runs at once, across every node: each run holds one of the app's
 * `run.max` slots (`/berth/run-slots/<app>/<n>`), created in the same create-only txn as its record
 * and under the same lease, so two nodes racing for the last slot cannot both win, and a dead
 * node's slots go with its lease.
 */

export interface CreatedRun {
  key: string;
  slotKey: string;
  record: RunRecord;
  /** The txn's revision: the record's mod revision. */
  revision: number;
}

const MAX_ATTEMPTS = 50;
/** Keys read per transaction by a sweep: well within etcd's 128 operations. */
const SWEEP_BATCH = 64;

/** Records `run.N` (N at random, as Heroku numbers them) in a free slot, or refuses with 429. */
export async function createRun(store: Store, o: { appName: string; maxRuns: number; lease: () => string | undefined; record: Omit<RunRecord, 'name'> }): Promise<CreatedRun> {
  const appId = o.record.app_id;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const r = await store.range(keys.runSlots(appId), { prefix: true });
    const taken = new Set(r.kvs.filter((kv) => tryDecode(codecs.runSlot, kv) !== undefined).map((kv) => kv.key));
    // Slots past a lowered run.max still count until their runs end.
    if (taken.size >= o.maxRuns) {
      throw new BerthError(
        ErrorCode.RateLimit,
        `Cannot run more than ${o.maxRuns} one-off dynos at once for ${o.appName}. Wait for one to exit, stop one with \`berth ps:stop run.N\`, or raise the limit with \`berth limits:set run.max=N\`.`,
      );
    }
    let slot = 0;
    while (taken.has(keys.runSlot(appId, slot))) slot++;
    const name = `run.${randomInt(1000, 10000)}`;
    const key = keys.run(appId, name);
    const slotKey = keys.runSlot(appId, slot);
    const record: RunRecord = { ...o.record, name };
    // Only under the node's lease: a record without one would outlive the node in `ps`.
    const lease = o.lease();
    if (!lease) throw conflict('This node is re-registering; try again in a moment.');
    const t = await store.txn({
      compare: [
        { key, target: 'create', op: '=', value: 0 },
        { key: slotKey, target: 'create', op: '=', value: 0 },
      ],
      success: [putOp(key, codecs.run, record, lease), putOp(slotKey, codecs.runSlot, name, lease)],
    });
    // Lost: the name was taken, or another run took the slot. Look again.
    if (t.succeeded) return { key, slotKey, record, revision: t.revision };
  }
  throw conflict('Could not pick a free run.N name; try again.');
}

/** The run has ended: its record goes, and its slot if it still holds it (after a lost lease another run may). */
export async function deleteRun(store: Store, run: Pick<CreatedRun, 'key' | 'slotKey'>, name: string): Promise<void> {
  await store.txn({
    compare: [{ key: run.slotKey, target: 'value', op: '=', value: name }],
    success: [{ type: 'delete', key: run.key }, { type: 'delete', key: run.slotKey }],
    failure: [{ type: 'delete', key: run.key }],
  });
}

/** Under a new lease (the old one was lost): the slot again, if nobody took it meanwhile. */
export async function reclaimSlot(store: Store, slotKey: string, name: string, lease: string): Promise<void> {
  await store.txn({ compare: [{ key: slotKey, target: 'create', op: '=', value: 0 }], success: [putOp(slotKey, codecs.runSlot, name, lease)] });
}

/** Where every app's run slots live (the parent of `runSlots(app)`). */
const ALL_SLOTS = keys.runSlots('x').slice(0, -'x/'.length);

/**
 * Deletes the run records and slots held under `lease` that are not in `keep` (this node's live
 * and ending runs): what a failed `deleteRun` left behind, which would otherwise hold one of the
 * app's run.max slots until the node restarts. Each delete holds only while the key is as this
 * sweep read it, before asking `keep`: a slot freed since and taken by a new run under the same
 * lease has a newer revision and stays. Returns how many went (undefined: not now).
 */
export async function sweepRuns(store: Store, lease: string, keep: () => Set<string> | undefined): Promise<number | undefined> {
  const held = (await store.leaseInfo(lease)).keys.filter((k) => k.startsWith(keys.allRuns()) || k.startsWith(ALL_SLOTS));
  const read = new Map<string, number>();
  for (let i = 0; i < held.length; i += SWEEP_BATCH) {
    const r = await store.txn({ compare: [], success: held.slice(i, i + SWEEP_BATCH).map((key) => ({ type: 'range' as const, key })) });
    for (const res of r.results) if (res.type === 'range' && res.kvs[0]) read.set(res.kvs[0].key, res.kvs[0].modRevision);
  }
  // Asked after the keys were read: a run recorded meanwhile is in it by now, or, while one is
  // still being recorded, `keep` says not now (undefined).
  const live = keep();
  if (!live) return undefined;
  let swept = 0;
  for (const [key, mod] of read) {
    if (live.has(key)) continue;
    const t = await store.txn({
      compare: [
        { key, target: 'mod', op: '=', value: mod },
        { key, target: 'lease', op: '=', value: lease },
      ],
      success: [{ type: 'delete', key }],
    });
    if (t.succeeded) swept++;
  }
  return swept;
}

/** `deleteRun`, tried again with backoff (0.1 s doubling, `attempts` in all); the last failure is thrown. */
export async function deleteRunWithRetry(store: Store, run: Pick<CreatedRun, 'key' | 'slotKey'>, name: string, attempts = 5): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await deleteRun(store, run, name);
      return;
    } catch (err) {
      if (attempt >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** (attempt - 1)));
    }
  }
}
