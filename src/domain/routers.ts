import type { Store } from '../store/index.js';
import { keys } from './keys.js';

/**
 * The rollout handshake: true once every live router (each under its own lease, so dead ones drop
 * out by themselves) reports having applied `revision`. With no router at all, nothing routes to
 * the dyno, so it holds at once.
 */
export async function routersCaughtUp(store: Store, revision: number): Promise<boolean> {
  const routers = await store.range(keys.routers(), { prefix: true });
  return routers.kvs.every((kv) => ((JSON.parse(kv.value) as { revision?: number }).revision ?? 0) >= revision);
}

/** Waits (bounded) for routers to catch up; a router that never does cannot hold a stop forever. */
export async function waitForRouters(store: Store, revision: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await routersCaughtUp(store, revision).catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
