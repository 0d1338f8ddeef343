import { describe, expect, it } from 'vitest';
import { Passes } from '../../src/loop/index.js';
import { captureLog, silentLog } from '../support/log.js';
import { until } from '../support/until.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A pass that holds until the test opens its gate, counting how often it started. */
function gatedPass(): { run: () => Promise<void>; open: () => void; started: number[] } {
  let release: () => void = () => undefined;
  let gate = new Promise<void>((r) => (release = r));
  const started: number[] = [];
  return {
    started,
    run: async () => {
      started.push(Date.now());
      await gate;
    },
    open: () => {
      release();
      // Later passes go straight through.
      gate = Promise.resolve();
    },
  };
}

describe('Passes', () => {
  it('answers 100 triggers that arrive while a pass runs with exactly one more pass, which each of them waits for', async () => {
    const pass = gatedPass();
    const passes = new Passes({ run: pass.run, log: silentLog(), debounceMs: 5, maxWaitMs: 20 });
    const first = passes.now();
    await until('the first pass running', () => pass.started.length === 1);
    const settled: number[] = [];
    const waiting = Array.from({ length: 100 }, (_, i) => passes.now().then(() => settled.push(i)));
    for (let i = 0; i < 100; i++) passes.request();
    // Past the debounce and the maximum wait: the requests' timers fire while the pass still runs.
    await sleep(60);
    expect(pass.started).toHaveLength(1);
    pass.open();
    await first;
    await Promise.all(waiting);
    expect(settled).toHaveLength(100);
    await sleep(60);
    expect(pass.started).toHaveLength(2);
    expect(passes.count).toBe(2);
    await passes.stop();
  });

  it('does not resolve a trigger with the pass that was already running when it came', async () => {
    const pass = gatedPass();
    const passes = new Passes({ run: pass.run, log: silentLog() });
    const first = passes.now();
    await until('the first pass running', () => pass.started.length === 1);
    let secondDone = false;
    const second = passes.now().then(() => (secondDone = true));
    // The first pass ends; the trigger that came during it is served only by the pass after it.
    let secondDoneWhenFirstEnded: boolean | undefined;
    const firstEnded = first.then(() => (secondDoneWhenFirstEnded = secondDone));
    pass.open();
    await firstEnded;
    expect(secondDoneWhenFirstEnded).toBe(false);
    await second;
    expect(pass.started).toHaveLength(2);
    await passes.stop();
  });

  it('still runs a pass within maxWaitMs under triggers every 10 ms, which the debounce alone would never answer', async () => {
    const starts: number[] = [];
    const passes = new Passes({ run: async () => void starts.push(Date.now()), log: silentLog(), debounceMs: 50, maxWaitMs: 200 });
    const begin = Date.now();
    const timer = setInterval(() => passes.request(), 10);
    passes.request();
    try {
      await sleep(1000);
    } finally {
      clearInterval(timer);
    }
    // Each trigger comes well inside the 50 ms debounce of the one before, so only the cap runs passes.
    expect(starts.length).toBeGreaterThanOrEqual(3);
    expect(starts[0]! - begin).toBeLessThan(200 + 150);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeLessThan(200 + 150);
    await passes.stop();
  });

  it('debounces a burst of requests into one pass, run about debounceMs after the last', async () => {
    const starts: number[] = [];
    const passes = new Passes({ run: async () => void starts.push(Date.now()), log: silentLog(), debounceMs: 40, maxWaitMs: 1000 });
    for (let i = 0; i < 50; i++) passes.request();
    const last = Date.now();
    await sleep(150);
    expect(starts).toHaveLength(1);
    expect(starts[0]! - last).toBeGreaterThanOrEqual(35);
    await passes.stop();
  });

  it('stop() during a running pass waits only for that pass and drops the one queued behind it', async () => {
    const pass = gatedPass();
    const passes = new Passes({ run: pass.run, log: silentLog(), debounceMs: 5 });
    void passes.now();
    await until('the first pass running', () => pass.started.length === 1);
    const queued = passes.now();
    passes.request();
    let stopped = false;
    const stopping = passes.stop().then(() => (stopped = true));
    await sleep(30);
    // The running pass is still running: stop() waits for it.
    expect(stopped).toBe(false);
    pass.open();
    await stopping;
    // Whoever waited on the dropped pass is let go rather than left hanging.
    await queued;
    await sleep(30);
    expect(pass.started).toHaveLength(1);
    // Nothing runs after a stop, and asking again resolves at once.
    await passes.now();
    passes.request();
    await sleep(30);
    expect(pass.started).toHaveLength(1);
  });

  it('stop() while idle drops a debounced request before it fires', async () => {
    let runs = 0;
    const passes = new Passes({ run: async () => void runs++, log: silentLog(), debounceMs: 20 });
    passes.request();
    await passes.stop();
    await sleep(60);
    expect(runs).toBe(0);
  });

  it('logs a failing pass and goes on: the next pass still runs', async () => {
    const { log, lines } = captureLog();
    let runs = 0;
    const passes = new Passes({
      run: async () => {
        runs++;
        if (runs === 1) throw new Error('the store said no');
      },
      log,
    });
    await passes.now();
    expect(lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'pass failed', err: 'the store said no' }));
    await passes.now();
    expect(runs).toBe(2);
    expect(passes.count).toBe(2);
    await passes.stop();
  });
});
