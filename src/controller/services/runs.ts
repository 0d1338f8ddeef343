import { get, list, putOp } from '../../domain/codec.js';
import { notFound } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import { codecs, type RunRecord } from '../../domain/records.js';
import type { Store } from '../../store/index.js';

/**
 * A one-off dyno as the store knows it, at /berth/runs/<app>/<run.N>, under the lease of the
 * controller node running it: a node that dies takes its records with it. The fields a formation
 * dyno's status has are named alike, so `GET /apps/:app/dynos` lists both the same way.
 */
export type { RunRecord };

/** Heroku names one-off dynos run.N; the number is what `DELETE /dynos/run.N` takes. */
export const RUN_NAME = /^run\.\d{1,9}$/;

export async function listRuns(store: Store, appId: string): Promise<RunRecord[]> {
  return (await list(store, keys.runs(appId), codecs.run)).map((e) => e.value);
}

export async function getRun(store: Store, appId: string, name: string): Promise<RunRecord> {
  if (!RUN_NAME.test(name)) throw notFound('dyno');
  const r = await get(store, keys.run(appId, name), codecs.run);
  if (!r) throw notFound('dyno');
  return r.value;
}

/**
 * Asks whichever node runs the dyno to stop it, through the store: that node watches its records
 * and stops the dyno when one turns `stopping`. The record keeps its lease, so a node that died
 * meanwhile still takes it away.
 */
export async function requestStop(store: Store, appId: string, name: string): Promise<void> {
  if (!RUN_NAME.test(name)) throw notFound('dyno');
  const key = keys.run(appId, name);
  for (;;) {
    const rec = await get(store, key, codecs.run);
    if (!rec) throw notFound('dyno');
    if (rec.value.state === 'stopping') return;
    const next: RunRecord = { ...rec.value, state: 'stopping', updated_at: new Date().toISOString() };
    const r = await store.txn({
      compare: [{ key, target: 'mod', op: '=', value: rec.mod }],
      success: [putOp(key, codecs.run, next, rec.lease)],
    });
    if (r.succeeded) return;
  }
}
