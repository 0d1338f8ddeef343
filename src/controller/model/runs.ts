import { notFound } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import type { Store } from '../../store/index.js';
import { getJson, listJson } from './json-store.js';

/**
 * A one-off dyno as the store knows it, at /berth/runs/<app>/<run.N>, under the lease of the
 * controller node running it: a node that dies takes its records with it. The fields a formation
 * dyno's status has are named alike, so `GET /apps/:app/dynos` lists both the same way.
 */
export interface RunRecord {
  app_id: string;
  name: string;
  type: 'run';
  /** starting: waiting for its client to attach; stopping: someone asked it to stop. */
  state: 'starting' | 'up' | 'stopping';
  command: string;
  size: string;
  release: { id: string; version: number };
  /** The controller node running it. */
  node: string;
  user_id: string;
  attach: boolean;
  created_at: string;
  updated_at: string;
}

/** Heroku names one-off dynos run.N; the number is what `DELETE /dynos/run.N` takes. */
export const RUN_NAME = /^run\.\d{1,9}$/;

export function listRuns(store: Store, appId: string): Promise<RunRecord[]> {
  return listJson<RunRecord>(store, keys.runs(appId));
}

export async function getRun(store: Store, appId: string, name: string): Promise<RunRecord> {
  if (!RUN_NAME.test(name)) throw notFound('dyno');
  const r = await getJson<RunRecord>(store, keys.run(appId, name));
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
    const kv = await store.get(key);
    if (!kv) throw notFound('dyno');
    const rec = JSON.parse(kv.value) as RunRecord;
    if (rec.state === 'stopping') return;
    const next: RunRecord = { ...rec, state: 'stopping', updated_at: new Date().toISOString() };
    const r = await store.txn({
      compare: [{ key, target: 'mod', op: '=', value: kv.modRevision }],
      success: [{ type: 'put', key, value: JSON.stringify(next), lease: kv.lease }],
    });
    if (r.succeeded) return;
  }
}
