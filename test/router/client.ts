import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/domain/log.js';
import { Router, type RouterOptions } from '../../src/router/index.js';
import type { Store } from '../../src/store/index.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';

export { call, type Call, type Reply } from '../support/router.js';

/** The nginx workers now running under the router in `dir`. */
export function workers(dir: string): string[] {
  try {
    return execFileSync('pgrep', ['-P', readFileSync(join(dir, 'nginx.pid'), 'utf8').trim()]).toString().trim().split('\n').sort();
  } catch {
    return [];
  }
}

/**
 * Waits for a reload to finish, so no old worker can still accept a connection and answer from
 * the old config. Given the workers from before the change: until one worker runs, a new one.
 * Given a condition nginx's answers satisfy only under the new config: until it holds, then until
 * one worker runs.
 */
export async function afterReload(dir: string, beforeOrCond: string[] | (() => Promise<boolean> | boolean), ms = 8000): Promise<void> {
  if (typeof beforeOrCond === 'function') await until('the new config to answer', beforeOrCond, ms);
  const before = typeof beforeOrCond === 'function' ? [] : beforeOrCond;
  await until(
    'one nginx worker, a new one',
    () => {
      const now = workers(dir);
      return now.length === 1 && !before.includes(now[0] ?? '');
    },
    ms,
  );
}

/**
 * A dyno stand-in: answers JSON with its name and what the router told it; `/slow` answers after
 * 3 s; request bodies are read (and their size reported).
 */
export async function dyno(name: string, servers: Server[]): Promise<{ endpoint: string; server: Server }> {
  const port = await freePort();
  const server = createServer((req, res) => {
    let size = 0;
    req.on('data', (d: Buffer) => (size += d.length));
    req.on('end', () => {
      const answer = (): void => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ dyno: name, size, headers: req.headers }));
      };
      if (req.url === '/slow') setTimeout(answer, 3000);
      else answer();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  servers.push(server);
  return { endpoint: `127.0.0.1:${port}`, server };
}

export interface SuiteRouter {
  router: Router;
  /** Its directory (nginx.conf, certificates, logs). */
  dir: string;
  httpPort: number;
  httpsPort: number | undefined;
  /** Stops the router and the suite's upstream servers, and removes the directory. */
  stop(): Promise<void>;
}

/** A suite's router: real nginx in a fresh temp dir on fresh loopback ports, over `store`. */
export async function startRouter(o: { store: Store; id: string; upstreams: Server[]; https?: boolean; appLog?: RouterOptions['appLog']; log?: RouterOptions['log'] }): Promise<SuiteRouter> {
  const dir = mkdtempSync(join(tmpdir(), `berth-router-${o.id}-`));
  const [httpPort, httpsPort] = [await freePort(), o.https ? await freePort() : undefined];
  const router = new Router({
    store: o.store,
    log: o.log ?? createLogger('test', { level: process.env.ROUTER_TEST_LOG ?? 'silent', destination: process.stderr }),
    id: o.id,
    dir,
    httpPort,
    ...(httpsPort !== undefined ? { httpsPort } : {}),
    controlPort: await freePort(),
    domain: 'berth.test',
    ...(o.appLog ? { appLog: o.appLog } : {}),
  });
  const stop = async (): Promise<void> => {
    await router.stop();
    for (const s of o.upstreams) s.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await router.start();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { router, dir, httpPort, httpsPort, stop };
}
