import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registration } from '../../src/loop/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { captureLog, silentLog } from '../support/log.js';
import { until } from '../support/until.js';

// The cases wait on lease timing, so they run side by side, on one store, each with its own key.
let store: Store;
const registrations: Registration[] = [];
let holders = 0;

beforeAll(() => {
  store = openStore('memory://');
});
afterAll(async () => {
  await Promise.all(registrations.map((r) => r.stop()));
  await store.close();
});

interface Holder {
  reg: Registration;
  /** The key it writes under each lease. */
  key: string;
  leases: string[];
  attempts: { lease: string; at: number }[];
}

/** A holder that writes one key under each lease it is given, and remembers when and with which. */
async function holder(
  o: { fail?: (attempt: number) => boolean; after?: (lease: string, attempt: number) => Promise<void>; onLost?: () => void; log?: ReturnType<typeof silentLog> } = {},
): Promise<Holder> {
  const key = `/reg/${holders++}`;
  const leases: string[] = [];
  const attempts: { lease: string; at: number }[] = [];
  const reg = await Registration.start({
    store,
    log: o.log ?? silentLog(),
    ttl: 1,
    register: async (lease) => {
      attempts.push({ lease, at: Date.now() });
      if (o.fail?.(attempts.length)) throw new Error(`attempt ${attempts.length} refused`);
      await store.put(key, lease, { lease });
      leases.push(lease);
      await o.after?.(lease, attempts.length);
    },
    ...(o.onLost ? { onLost: o.onLost } : {}),
  });
  registrations.push(reg);
  return { reg, key, leases, attempts };
}

describe.concurrent('Registration', () => {
  it('registers under a lease it keeps alive past its TTL', async () => {
    const { reg, key, leases } = await holder();
    expect(reg.leaseId).toBe(leases[0]);
    expect((await store.get(key))?.lease).toBe(leases[0]);
    // Three TTLs later the key is still there: the lease is refreshed at a third of its TTL.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await store.get(key))?.lease).toBe(leases[0]);
    expect(leases).toHaveLength(1);
  });

  it('registers again under a new lease when its lease is revoked from outside', async () => {
    const { log, lines } = captureLog();
    let lost = 0;
    const { reg, key, leases } = await holder({ log, onLost: () => lost++ });
    const first = leases[0] as string;
    await store.revokeLease(first);
    expect(await store.get(key)).toBeUndefined();
    // Noticed at the next refresh (a third of the 1 s TTL), then taken again at once.
    const second = await until('a second registration', () => leases[1], 3000);
    expect(second).not.toBe(first);
    expect(reg.leaseId).toBe(second);
    expect((await store.get(key))?.lease).toBe(second);
    expect(lost).toBe(1);
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['lease lost; registering again', 'registered again']));
    // And the new lease is kept like the first.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await store.get(key))?.lease).toBe(second);
  });

  it('retries a failing re-registration with growing delays (200 ms, 400 ms, 800 ms, …)', async () => {
    // The first registration works; after the loss, three attempts are refused, the fourth works.
    const { reg, leases, attempts } = await holder({ fail: (n) => n >= 2 && n <= 4 });
    await store.revokeLease(leases[0] as string);
    await until('the registration to work again', () => leases[1], 6000);
    expect(attempts).toHaveLength(5);
    const gaps = attempts.slice(2).map((a, i) => a.at - (attempts[i + 1] as { at: number }).at);
    expect(gaps[0]).toBeGreaterThanOrEqual(190);
    expect(gaps[1]).toBeGreaterThanOrEqual(390);
    expect(gaps[2]).toBeGreaterThanOrEqual(790);
    for (const [i, gap] of gaps.entries()) expect(gap).toBeLessThan(200 * 2 ** i + 300);
    // Each attempt had a lease of its own, and a refused attempt leaves no lease behind.
    expect(new Set(attempts.map((a) => a.lease)).size).toBe(5);
    for (const a of attempts.slice(1, 4)) expect((await store.leaseInfo(a.lease)).remaining).toBe(-1);
    expect(reg.leaseId).toBe(leases[1]);
  });

  it('registers again when the lease is lost while a re-registration is still running, instead of keeping a dead lease', async () => {
    // The second registration's lease dies after its write, while the registration is still running.
    const { reg, key, leases, attempts } = await holder({
      after: async (lease, attempt) => {
        if (attempt !== 2) return;
        await store.revokeLease(lease);
        await new Promise((r) => setTimeout(r, 800));
      },
    });
    await store.revokeLease(leases[0] as string);
    const live = await until('a live registration', async () => {
      const id = reg.leaseId;
      return id && (await store.leaseInfo(id)).remaining > 0 && (await store.get(key))?.lease === id ? id : undefined;
    }, 5000);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(live).toBe(attempts[attempts.length - 1]?.lease);
  });

  it('stop() revokes the lease: what lives under it goes at once', async () => {
    const { reg, key, leases } = await holder();
    await reg.stop();
    expect(await store.get(key)).toBeUndefined();
    expect((await store.leaseInfo(leases[0] as string)).remaining).toBe(-1);
    expect(reg.leaseId).toBeUndefined();
  });

  it('stop() while re-registering with backoff ends the retries and leaves no lease behind', async () => {
    const { reg, leases, attempts } = await holder({ fail: (n) => n >= 2 });
    await store.revokeLease(leases[0] as string);
    await until('a refused attempt', () => attempts.length >= 3, 3000);
    await reg.stop();
    const made = attempts.length;
    await new Promise((r) => setTimeout(r, 1000));
    expect(attempts.length).toBe(made);
    for (const a of attempts) expect((await store.leaseInfo(a.lease)).remaining).toBe(-1);
  });

  it('leaves a failing first registration to its caller, with no lease left behind', async () => {
    let lease = '';
    await expect(
      Registration.start({
        store,
        log: silentLog(),
        ttl: 1,
        register: async (l) => {
          lease = l;
          throw new Error('cannot register');
        },
      }),
    ).rejects.toThrow('cannot register');
    expect((await store.leaseInfo(lease)).remaining).toBe(-1);
  });
});
