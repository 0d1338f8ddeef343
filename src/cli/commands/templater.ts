import { resolve } from 'node:path';
import type { Command } from 'commander';
import { createLogger } from '../../domain/log.js';
import { openStore } from '../../store/index.js';
import { Templater, loadResources } from '../../templater/index.js';
import { defaultDataDir, defaultStoreUrl } from '../paths.js';

/**
 * `berth templater --config DIR`: renders `DIR/conf.d/*.yaml` resources from the store and keeps
 * them current, like confd. `--onetime` renders once and exits (non-zero if any resource failed).
 */
export function register(program: Command): void {
  program
    .command('templater')
    .description('render config files from the store and keep them current (confd-style)')
    .requiredOption('--config <dir>', 'directory with conf.d/*.yaml resources and templates/')
    .option('--store <url>', 'store URL (default: the data dir\'s sqlite store)')
    .option('--data-dir <dir>', 'data dir whose store to use', defaultDataDir())
    .option('--debounce <ms>', 'render changes arriving within this window once', '50')
    .option('--interval <s>', 'also re-render everything this often', '60')
    .option('--onetime', 'render once and exit')
    .action(async (opts: { config: string; store?: string; dataDir: string; debounce: string; interval: string; onetime?: boolean }) => {
      const log = createLogger('berth-templater', { level: process.env.BERTH_LOG_LEVEL, destination: process.stderr });
      const store = openStore(opts.store ?? defaultStoreUrl(resolve(opts.dataDir)));
      const templater = new Templater({
        store,
        resources: loadResources(resolve(opts.config)),
        log,
        debounceMs: Number(opts.debounce) || 50,
        resyncMs: (Number(opts.interval) || 60) * 1000,
        onApplied: (revision) => log.debug({ revision }, 'applied'),
      });
      if (opts.onetime) {
        await templater.renderAll();
        await store.close();
        const failed = [...templater.outcomes].filter(([, o]) => o !== 'updated' && o !== 'unchanged');
        for (const [name, outcome] of failed) log.error({ resource: name, outcome }, 'resource failed');
        process.exitCode = failed.length ? 1 : 0;
        return;
      }
      const stopped = new Promise<void>((done) => {
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
      });
      await templater.start();
      const hold = setInterval(() => undefined, 1 << 30);
      await stopped;
      clearInterval(hold);
      await templater.stop();
      await store.close();
    });
}
