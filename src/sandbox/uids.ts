import { createHash, randomInt } from 'node:crypto';
import { decode, get, putOp, RecordMalformed } from '../domain/codec.js';
import { BerthError, notFound } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { Store } from '../store/index.js';

/** App uids come from [UID_BASE, UID_BASE + UID_COUNT): unprivileged, clear of the host's users. */
export const UID_BASE = 200_000;
export const UID_COUNT = 60_000;
// Random picks before reading which uids are taken; the range is far from full in practice.
const RANDOM_TRIES = 16;
const MAX_TRIES = 1000;

/**
 * The app's own unprivileged uid, the same for its builds, release phase and dynos on every node.
 * Allocated once and recorded in the store: `/berth/uids/<uid>` (which app holds it) and
 * `/berth/apps/<app>/uid` are created together by one create-only txn, so two apps never share a
 * uid, and concurrent callers for one app (two nodes) agree on the one that won. Idempotent.
 * Throws not_found for an app that does not exist (destroyed meanwhile): its uid would leak.
 */
export async function allocateUid(store: Store, appId: string): Promise<number> {
  const existing = await get(store, keys.appUid(appId), codecs.uid);
  if (existing) {
    const uid = checked(existing.value.uid);
    // Both records are written and deleted together; one that disagrees with the other was not
    // written by Berth, and running this app as another app's uid would open that app's files.
    const owner = await get(store, keys.uid(uid), codecs.uidOwner);
    if (owner?.value.app_id !== appId) throw new BerthError(RecordMalformed, `app ${appId} names uid ${uid}, which /berth/uids/ gives to ${owner ? 'another app' : 'no app'}; refusing to run it as that uid`);
    return uid;
  }
  let free: number[] = [];
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    let uid: number;
    // First the uid the app had when uids were a hash of its id: apps keep theirs where they can.
    if (attempt === 0) uid = hashedUid(appId);
    else if (attempt <= RANDOM_TRIES) uid = UID_BASE + randomInt(UID_COUNT);
    else {
      if (free.length === 0) free = await freeUids(store);
      if (free.length === 0) break;
      uid = free.splice(randomInt(free.length), 1)[0] as number;
    }
    const r = await store.txn({
      compare: [
        { key: keys.app(appId), target: 'create', op: '>', value: 0 },
        { key: keys.appUid(appId), target: 'create', op: '=', value: 0 },
        { key: keys.uid(uid), target: 'create', op: '=', value: 0 },
      ],
      success: [putOp(keys.appUid(appId), codecs.uid, { uid }), putOp(keys.uid(uid), codecs.uidOwner, { app_id: appId })],
      failure: [
        { type: 'range', key: keys.appUid(appId) },
        { type: 'range', key: keys.app(appId) },
      ],
    });
    if (r.succeeded) return uid;
    const [mine, app] = r.results;
    // Another caller allocated this app's uid first: theirs it is.
    if (mine?.type === 'range' && mine.kvs[0]) return checked(decode(codecs.uid, mine.kvs[0]).uid);
    if (app?.type === 'range' && app.kvs.length === 0) throw notFound('app');
    // Otherwise the uid belongs to another app: try another.
  }
  throw new BerthError('uids_exhausted', `No free app uid left in ${UID_BASE}-${UID_BASE + UID_COUNT - 1}.`, { retryable: true });
}

function hashedUid(appId: string): number {
  return UID_BASE + (createHash('sha256').update(appId).digest().readUInt32BE(0) % UID_COUNT);
}

async function freeUids(store: Store): Promise<number[]> {
  const prefix = keys.uids();
  // Keys, not values: a uid is taken whatever its record says.
  const taken = new Set((await store.range(prefix, { prefix: true })).kvs.map((kv) => Number(kv.key.slice(prefix.length))));
  const free: number[] = [];
  for (let uid = UID_BASE; uid < UID_BASE + UID_COUNT; uid++) if (!taken.has(uid)) free.push(uid);
  return free;
}

/** Never hand out a uid outside the app range (root's, a host user's), whatever the store says. */
function checked(uid: number): number {
  if (uid < UID_BASE || uid >= UID_BASE + UID_COUNT) throw new BerthError(RecordMalformed, `app uid ${uid} is outside ${UID_BASE}-${UID_BASE + UID_COUNT - 1}`);
  return uid;
}
