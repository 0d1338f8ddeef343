import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { keys } from '../../domain/keys.js';
import { createLogger } from '../../domain/log.js';
import { openStore } from '../../store/index.js';
import { header, keyValues } from '../output.js';
import { defaultDataDir, defaultStoreUrl } from '../paths.js';

interface UpOptions {
  dataDir: string;
  store?: string;
  json?: boolean;
}

/**
 * `berth up`: the composition root of a platform node. Today it opens the store (creating the data
 * dir and the embedded database on first run), records the platform, reports where the truth
 * lives, and holds the store until SIGINT/SIGTERM. Later issues wire the controller, scheduler,
 * agent and router here.
 */
export function register(program: Command): void {
  program
    .command('up')
    .description('start the platform on this machine')
    .option('--data-dir <dir>', 'where Berth keeps its state', defaultDataDir())
    .option('--store <url>', 'store URL: sqlite:///path/state.db (default, in the data dir) or etcd://host:port[,host:port]')
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: UpOptions) => {
      const dataDir = resolve(opts.dataDir);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const url = opts.store ?? defaultStoreUrl(dataDir);
      const log = createLogger('berth', { destination: process.stderr });
      const store = openStore(url);
      const existing = await store.get(keys.platform());
      if (!existing) {
        await store.txn({
          compare: [{ key: keys.platform(), target: 'create', op: '=', value: 0 }],
          success: [{ type: 'put', key: keys.platform(), value: JSON.stringify({ created_at: new Date().toISOString() }) }],
        });
      }
      // Signals are handled from here on, before anything announces that the node is up.
      // The store's own timers do not hold the process open (a library must not); the node does.
      const hold = setInterval(() => undefined, 1 << 30);
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => done('SIGINT'));
        process.once('SIGTERM', () => done('SIGTERM'));
      });
      const revision = await store.currentRevision();
      const summary = { data_dir: dataDir, store: store.description, revision };
      log.info(summary, 'store open');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header('Berth is up'));
        console.log(keyValues([['Data dir', dataDir], ['Store', store.description], ['Revision', revision]]));
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      clearInterval(hold);
      await store.close();
    });
}
