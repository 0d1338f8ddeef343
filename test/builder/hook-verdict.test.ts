import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerHookRoute, type PushHandler } from '../../src/builder/push.js';

/**
 * The verdict of a push must be a line of its own whatever the build printed: a build whose last
 * line's end was skipped for a slow reader (or that printed no newline) used to have the verdict
 * glued to that line, and the hook refused a push whose release was already live.
 */

const HOOK = join(import.meta.dirname, '..', '..', 'src', 'builder', 'hook', 'pre-receive.cjs');
const BIG = 32 * 1024 * 1024;

let api: FastifyInstance;
let url: string;
/** Settles once the stand-in deployer has written everything (the reader has read nothing yet). */
let handled: Promise<void>;
/** What the stand-in deployer prints: a huge partial line, or a short one with no newline. */
let mode: 'skipped' | 'short' = 'skipped';

beforeAll(async () => {
  api = Fastify();
  // A stand-in for the push handler: prints a partial line, then more than the reader's queue
  // allows, so the line's end is skipped; the deploy succeeds.
  const pushes = {
    async handle(_body: unknown, write: (text: string) => void): Promise<boolean> {
      let done!: () => void;
      handled = new Promise((r) => (done = r));
      write('-----> Building\nstart of a line ');
      if (mode === 'skipped') {
        write('Y'.repeat(BIG));
        write(' and its end\n');
      }
      done();
      return true;
    },
  } as unknown as PushHandler;
  registerHookRoute(api, pushes);
  await api.listen({ host: '127.0.0.1', port: 0 });
  const address = api.server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/internal/git-hook`;
});
afterAll(async () => {
  await api?.close();
});

describe('the push verdict', () => {
  it('starts a line of its own after a partial line whose end was skipped', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        // A slow reader: nothing read until the deployer is done.
        res.pause();
        const chunks: Buffer[] = [];
        void handled.then(() => {
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve(Buffer.concat(chunks).toString()));
          res.resume();
        });
      });
      req.on('error', reject);
      req.end('{}');
    });
    expect(body).toMatch(/of output skipped|^-----> Building/);
    expect(body.length).toBeLessThan(BIG + 1024);
    // The line before the verdict is the partial one; the verdict is whole.
    expect(body.endsWith('\n@@berth-result ok\n')).toBe(true);
    expect(body.slice(0, -'\n@@berth-result ok\n'.length)).toMatch(/Y$/);
  }, 30_000);

  it('the real hook accepts a push whose output ends without a newline (exit 0), showing the output without the verdict', async () => {
    mode = 'short';
    const child = spawn(process.execPath, [HOOK], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', BERTH_HOOK_URL: url, BERTH_PUSH_SECRET: 's' }, stdio: ['pipe', 'ignore', 'pipe'] });
    child.stdin.end(`${'0'.repeat(40)} ${'a'.repeat(40)} refs/heads/main\n`);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code, err.slice(-300)).toBe(0);
    expect(err).toBe('-----> Building\nstart of a line \n');
  }, 30_000);
});
