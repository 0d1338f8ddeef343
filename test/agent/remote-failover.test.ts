import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ControllerLink } from '../../src/agent/remote.js';
import { ClusterTokens } from '../../src/controller/services/cluster.js';
import { openStore } from '../../src/store/index.js';
import { startSlugServer, type SlugServer } from '../builder/slug-cluster.js';
import { captureLog } from '../support/log.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';

const root = mkdtempSync(join(tmpdir(), 'berth-remote-failover-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const APP = '00000000-0000-4000-8000-0000000000a1';

describe("an agent's log lines", () => {
  it('go to the join URL while it answers, then to another live server, and stay there', async () => {
    const store = openStore('memory://');
    const { log } = captureLog('silent');
    const open: SlugServer[] = [];
    const server = async (id: string) => {
      const s = await startSlugServer({ store, log, root, id });
      open.push(s);
      return s;
    };
    try {
      const credential = await new ClusterTokens(store).issue('agent-1', 'agent-1', 'agent');
      const a = await server('srv-a');
      const b = await server('srv-b');
      const messages = (s: SlugServer) => s.services.logs.recent(APP, 100).map((l) => l.message);
      const link = new ControllerLink(a.url, credential, log);
      link.attach(store);
      link.appLog(APP, 'app', 'web.1', 'one');
      await link.flush();
      expect(messages(a)).toEqual(['one']);
      // The server it joined through dies: the next batch goes to B, and so does the one after.
      await a.close();
      link.appLog(APP, 'app', 'web.1', 'two');
      await link.flush();
      link.appLog(APP, 'app', 'web.1', 'three');
      await link.flush();
      expect(messages(b)).toEqual(['two', 'three']);
      // B dies too; C starts after the link last read the servers: found once B fails.
      await b.close();
      const c = await server('srv-c');
      link.appLog(APP, 'app', 'web.1', 'four');
      await until('C has the line', () => messages(c).includes('four'));
      expect(messages(c)).toEqual(['four']);
      await link.close();
    } finally {
      for (const s of open) await s.close().catch(() => undefined);
      await store.close();
    }
  });

  it('are kept while no server answers, and sent once one does', async () => {
    const store = openStore('memory://');
    const { log } = captureLog('silent');
    const credential = await new ClusterTokens(store).issue('agent-1', 'agent-1', 'agent');
    const link = new ControllerLink(`http://127.0.0.1:${await freePort()}`, credential, log);
    link.attach(store);
    link.appLog(APP, 'app', 'web.1', 'held');
    await link.flush();
    const a = await startSlugServer({ store, log, root, id: 'srv-late' });
    try {
      await until('the line arrives', () => a.services.logs.recent(APP, 10).some((l) => l.message === 'held'));
    } finally {
      await link.close();
      await a.close();
      await store.close();
    }
  });
});
