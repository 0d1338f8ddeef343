import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlLoop } from '../../src/loop/index.js';
import { openStore, type Store, type WatchBatch } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { silentLog } from '../support/log.js';
import { until } from '../support/until.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const PREFIX = '/t/';

/**
 * A loop whose state is the prefix's keys and values, kept the way every Berth loop keeps its own:
 * read in full by `load`, then fed by `apply`. It records what it was fed, so a test can tell an
 * event lost (state differs from the store) from one fed twice (a revision at or below the read
 * that covers it, or the same key and revision twice).
 */
class Follower {
  readonly state = new Map<string, string>();
  /** The revision each full read covered, in order. */
  readonly loads: number[] = [];
  readonly applied: { key: string; revision: number; afterLoad: number }[] = [];
  passes = 0;
  readonly loop: ControlLoop;
  /** Runs inside the next load, after its read (a test's way to act between the read and the watch). */
  duringLoad: ((revision: number) => Promise<void>) | undefined;

  constructor(
    readonly store: Store,
    o: { resyncMs?: number; repairMs?: number; pass?: () => Promise<void> } = {},
  ) {
    this.loop = new ControlLoop({
      store,
      log: silentLog(),
      prefix: PREFIX,
      load: async () => {
        const r = await store.range(PREFIX, { prefix: true });
        const hook = this.duringLoad;
        this.duringLoad = undefined;
        await hook?.(r.revision);
        return {
          revision: r.revision,
          commit: () => {
            this.state.clear();
            for (const kv of r.kvs) this.state.set(kv.key, kv.value);
            this.loads.push(r.revision);
          },
        };
      },
      apply: (batch: WatchBatch) => {
        for (const e of batch.events) {
          this.applied.push({ key: e.kv.key, revision: e.kv.modRevision, afterLoad: this.loads[this.loads.length - 1] ?? 0 });
          if (e.type === 'put') this.state.set(e.kv.key, e.kv.value);
          else this.state.delete(e.kv.key);
        }
        return true;
      },
      pass: async () => {
        this.passes++;
        await o.pass?.();
      },
      debounceMs: 5,
      maxWaitMs: 20,
      ...(o.resyncMs !== undefined ? { resyncMs: o.resyncMs } : {}),
      ...(o.repairMs !== undefined ? { repairMs: o.repairMs } : {}),
    });
  }

  /** The prefix as the store has it now. */
  async truth(): Promise<Map<string, string>> {
    const r = await this.store.range(PREFIX, { prefix: true });
    return new Map(r.kvs.map((kv) => [kv.key, kv.value]));
  }

  /** Events fed at or below the read that was in force (already covered by it), or fed twice. */
  doubled(): string[] {
    const seen = new Set<string>();
    const out: string[] = [];
    for (const a of this.applied) {
      const id = `${a.key}@${a.revision}`;
      if (a.revision <= a.afterLoad || seen.has(id)) out.push(id);
      seen.add(id);
    }
    return out;
  }

  /** Waits until the state is the store's prefix (no event lost). */
  async caughtUp(): Promise<void> {
    await until('the loop to hold what the store holds', async () => {
      const truth = await this.truth();
      return truth.size === this.state.size && [...truth].every(([k, v]) => this.state.get(k) === v);
    });
  }
}

let inner: Store;
let store: CountingStore;
let followers: Follower[] = [];
const follower = (o?: ConstructorParameters<typeof Follower>[1]): Follower => {
  const f = new Follower(store, o);
  followers.push(f);
  return f;
};

beforeEach(() => {
  inner = openStore('memory://');
  store = new CountingStore(inner);
  followers = [];
});
afterEach(async () => {
  await Promise.all(followers.map((f) => f.loop.stop()));
  await store.close();
});

describe('ControlLoop', () => {
  it('builds its state with one read, then keeps it from the watch alone', async () => {
    await inner.put(`${PREFIX}a`, '1');
    await inner.put(`${PREFIX}b`, '2');
    await inner.put('/elsewhere/x', 'not followed');
    const f = follower();
    await f.loop.start();
    expect(f.state).toEqual(new Map([[`${PREFIX}a`, '1'], [`${PREFIX}b`, '2']]));
    await until('the first pass', () => f.passes >= 1);
    const passes = f.passes;

    await inner.put(`${PREFIX}c`, '3');
    await inner.put(`${PREFIX}a`, '1b');
    await inner.delete(`${PREFIX}b`);
    await inner.put('/elsewhere/y', 'still not followed');
    await f.caughtUp();
    expect(f.state).toEqual(new Map([[`${PREFIX}a`, '1b'], [`${PREFIX}c`, '3']]));
    // Each change was applied once, from the watch: no second full read and no read per change
    // (the only reads since are the test's own, in caughtUp).
    expect(f.loop.loads).toBe(1);
    expect(f.loads).toHaveLength(1);
    expect(f.applied.map((a) => a.key)).toEqual([`${PREFIX}c`, `${PREFIX}a`, `${PREFIX}b`]);
    expect(f.doubled()).toEqual([]);
    await until('a pass for the changes', () => f.passes > passes);
  });

  it('reads nothing on its passes: the changes and the timer pass work from memory', async () => {
    const f = follower({ resyncMs: 30 });
    await f.loop.start();
    const reads = store.reads();
    for (let i = 0; i < 20; i++) await inner.put(`${PREFIX}k${i}`, String(i));
    const passes = f.passes;
    await until('timer passes', () => f.passes >= passes + 3);
    expect(store.reads()).toBe(reads);
    expect(f.state.size).toBe(20);
  });

  it('reads everything again after a watch gap (history compacted past its revision) and neither loses nor doubles an event', async () => {
    await inner.put(`${PREFIX}a`, '1');
    const f = follower();
    // Between the first read and the watch, three writes land and history is compacted past them:
    // the watch from the read's revision + 1 can only fail with `compacted`.
    f.duringLoad = async () => {
      await inner.put(`${PREFIX}b`, '2');
      await inner.put(`${PREFIX}a`, '1b');
      const r = await inner.put(`${PREFIX}c`, '3');
      await inner.compact(r.revision);
    };
    await f.loop.start();
    await until('a second full read, after the gap', () => f.loop.loads >= 2);
    await f.caughtUp();
    // Then the new watch goes on from the second read.
    await inner.put(`${PREFIX}d`, '4');
    await inner.delete(`${PREFIX}a`);
    await f.caughtUp();
    expect(f.loop.loads).toBe(2);
    expect([...f.state.keys()].sort()).toEqual([`${PREFIX}b`, `${PREFIX}c`, `${PREFIX}d`]);
    expect(f.applied.map((a) => a.key)).toEqual([`${PREFIX}d`, `${PREFIX}a`]);
    expect(f.doubled()).toEqual([]);
  });

  it('reads everything again when its live watch breaks (a store restart) while writes go on, losing and doubling nothing', async () => {
    const f = follower();
    await f.loop.start();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await inner.put(`${PREFIX}k${i % 7}`, String(i));
        if (i % 5 === 0) await inner.delete(`${PREFIX}k${(i + 3) % 7}`);
        await sleep(2);
      }
    })();
    try {
      await sleep(50);
      expect(store.breakWatches()).toBe(1);
      await until('a read after the break', () => f.loop.loads >= 2);
      // The watch is taken again (after follow's pause) from just after that read.
      await until('the watch taken again', () => store.calls.watch >= 2);
      await sleep(50);
      expect(store.breakWatches()).toBe(1);
      await until('a read after the second break', () => f.loop.loads >= 3);
      await until('the watch taken again', () => store.calls.watch >= 3);
      await sleep(50);
    } finally {
      writing = false;
      await writer;
    }
    await f.caughtUp();
    expect(f.loop.loads).toBe(3);
    expect(f.doubled()).toEqual([]);
    // Events were applied after each read, not only reads: the watch resumed every time.
    for (const covered of f.loads) expect(f.applied.some((a) => a.afterLoad === covered)).toBe(true);
  });

  it('repairs on its timer: a full read that restarts the watch from its own revision, so events during it are neither lost nor doubled', async () => {
    const f = follower({ repairMs: 60 });
    await f.loop.start();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await inner.put(`${PREFIX}k${i % 5}`, String(i));
        await sleep(3);
      }
    })();
    try {
      await until('three repairs', () => f.loop.loads >= 4);
    } finally {
      writing = false;
      await writer;
    }
    await f.caughtUp();
    expect(f.doubled()).toEqual([]);
  });

  it('stops promptly: no more reads, applies or passes; a running pass is waited for, a queued one dropped', async () => {
    let release: () => void = () => undefined;
    let inPass = false;
    const f = follower({
      resyncMs: 20,
      pass: async () => {
        inPass = true;
        await new Promise<void>((r) => (release = r));
        inPass = false;
      },
    });
    await f.loop.start();
    await until('a pass running', () => inPass);
    await inner.put(`${PREFIX}queued`, 'x');
    await until('the change applied', () => f.state.has(`${PREFIX}queued`));
    let stopped = false;
    const stopping = f.loop.stop().then(() => (stopped = true));
    await sleep(30);
    expect(stopped).toBe(false);
    const t0 = Date.now();
    release();
    await stopping;
    expect(Date.now() - t0).toBeLessThan(200);
    // The pass the change (and the timer) queued behind the running one never ran.
    expect(f.passes).toBe(1);
    const passes = f.passes;
    const applied = f.applied.length;
    const calls = { ...store.calls };
    await inner.put(`${PREFIX}after`, 'y');
    await sleep(80);
    expect(f.passes).toBe(passes);
    expect(f.applied.length).toBe(applied);
    expect(store.calls.range).toBe(calls.range);
  });

  it('stops promptly when idle', async () => {
    const f = follower({ resyncMs: 10_000, repairMs: 10_000 });
    await f.loop.start();
    const t0 = Date.now();
    await f.loop.stop();
    expect(Date.now() - t0).toBeLessThan(200);
  });
});
