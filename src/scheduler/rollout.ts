import { get, list, putOp } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs, type StatusRecord } from '../domain/records.js';
import { unitKey } from '../domain/units.js';
import type { Store, TxnOp } from '../store/index.js';
import type { AppView, Assignment, Plan } from './types.js';

/** A new release's dyno that crashed this often without ever coming up fails the release. */
export const FAIL_AFTER_CRASHES = 3;

/** The fields of a dyno's `StatusRecord` a rollout reads. */
export interface UnitStatus {
  state: StatusRecord['state'] | string;
  reason?: string | null;
  restarts?: number;
}

export interface FailedRollout {
  app: AppView;
  version: number;
  reason: string;
}

/**
 * Rollouts to give up on, as a pure function: an app whose current release's newest units are
 * all crashing (each at least FAIL_AFTER_CRASHES times) while units of an older release they
 * would replace still serve. Only a rollout can fail this way — once the old units are gone the release has served,
 * and a later crash loop is the app's problem, shown in `berth ps`, not a failed release.
 */
export function failedRollouts(apps: AppView[], assignments: Assignment[], plan: Plan, statuses: Map<string, UnitStatus>): FailedRollout[] {
  const failed: FailedRollout[] = [];
  for (const app of apps) {
    const version = app.release?.version;
    if (version === undefined) continue;
    // A release rollout, with the old release still serving: a restart of a crash-looping
    // release (same version, new generation) must never roll the app back to older code.
    const serving = plan.superseded.some((a) => a.unit.appId === app.id && a.unit.release < version && statuses.get(unitKey(a.unit))?.state === 'up');
    if (!serving) continue;
    const old = new Set(plan.superseded.map((a) => unitKey(a.unit)));
    const fresh = assignments.filter((a) => a.unit.appId === app.id && a.unit.release === version && !old.has(unitKey(a.unit)));
    if (fresh.length === 0) continue;
    const crashing = fresh.map((a) => ({ a, s: statuses.get(unitKey(a.unit)) }));
    if (!crashing.every(({ s }) => s?.state === 'crashed' && (s.restarts ?? 0) >= FAIL_AFTER_CRASHES)) continue;
    const first = crashing[0];
    const name = first ? `${first.a.unit.type}.${first.a.unit.index}` : 'dyno';
    failed.push({ app, version, reason: `${name} crashed ${first?.s?.restarts ?? FAIL_AFTER_CRASHES} times before it was up: ${first?.s?.reason ?? 'unknown'}` });
  }
  return failed;
}

/**
 * Marks the release failed and makes the newest earlier release that succeeded current again, in
 * one txn (fenced on the caller's leadership): the plan then wants the old units, which never
 * stopped, and removes the crashing ones. The config key is left as it is: it is what the user
 * last set, and the next `config:set` or push builds on it.
 */
export async function failRelease(store: Store, fence: { key: string; revision: number }, f: FailedRollout): Promise<boolean> {
  const appKv = await get(store, keys.app(f.app.id), codecs.app);
  const relKv = await get(store, keys.release(f.app.id, f.version), codecs.release);
  if (!appKv || !relKv) return false;
  const app = appKv.value;
  const release = relKv.value;
  if (release.status !== 'succeeded' || app.current_version !== f.version) return false;
  const earlier = (await list(store, keys.releases(f.app.id), codecs.release))
    .map((e) => e.value)
    .filter((r) => r.version < f.version && r.status === 'succeeded' && r.slug_id)
    .sort((a, b) => b.version - a.version)[0];
  if (!earlier) return false;
  const now = new Date().toISOString();
  const ops: TxnOp[] = [
    putOp(keys.release(f.app.id, f.version), codecs.release, { ...release, status: 'failed', failure_reason: f.reason, updated_at: now }),
    putOp(keys.app(f.app.id), codecs.app, { ...app, current_version: earlier.version, updated_at: now }),
  ];
  const r = await store.txn({
    compare: [
      { key: fence.key, target: 'create', op: '=', value: fence.revision },
      { key: keys.app(f.app.id), target: 'mod', op: '=', value: appKv.mod },
      { key: keys.release(f.app.id, f.version), target: 'mod', op: '=', value: relKv.mod },
    ],
    success: ops,
  });
  return r.succeeded;
}
