import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ProcessRuntime } from '../../src/agent/runtime/process.js';
import { UID_BASE, UID_COUNT } from '../../src/sandbox/index.js';
import { testSandbox } from '../support/sandbox.js';

let dir: string;
let slugPath: string;
let runtime: ProcessRuntime;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-output-pause-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'Procfile'), 'flood: yes flood\n');
  slugPath = join(dir, 'slug.tgz');
  await tar.c({ gzip: true, cwd: join(dir, 'src'), file: slugPath, portable: true }, ['.']);
  runtime = new ProcessRuntime({ workDir: join(dir, 'work'), sandbox: testSandbox() });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Lines a `yes` dyno gets read in `ms` when every line is taken, or every line refused. */
async function linesRead(refuse: boolean, ms: number): Promise<number> {
  let lines = 0;
  const dyno = await runtime.start({
    id: `pause-${process.pid}-${refuse ? 'r' : 'a'}`,
    appId: 'flood',
    uid: UID_BASE + randomInt(UID_COUNT),
    dyno: 'flood.1',
    command: 'yes flood',
    slugPath,
    env: {},
    memoryBytes: 128 * 1024 * 1024,
    pidsMax: 50,
    onOutput: () => {
      lines++;
      return refuse ? false : undefined;
    },
  });
  await new Promise((r) => setTimeout(r, ms));
  const n = lines;
  await dyno.stop(0);
  return n;
}

it('reads a dyno that is over its log rate slowly: its writes block, not the node', async () => {
  const taken = await linesRead(false, 2000);
  const refused = await linesRead(true, 2000);
  // Every line refused: one chunk read per 100 ms pause, about 20 in 2 s (at most ~11,000 lines each).
  expect(refused).toBeLessThan(300_000);
  expect(taken).toBeGreaterThan(refused * 5);
}, 30_000);
