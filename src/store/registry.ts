import { resolve } from 'node:path';
import { StoreError, StoreErrorCode } from './errors.js';
import { EtcdStore, type EtcdTls } from './etcd/index.js';
import { SqliteStore } from './sqlite/index.js';
import type { Store } from './types.js';

/**
 * Backends by URL scheme, from one explicit table (kine's drivers/registry.go is the model): adding a
 * backend is adding a row, and an unknown scheme is an error that lists the known ones.
 */
interface Driver {
  example: string;
  open(raw: string, options: OpenStoreOptions): Store;
}

export interface OpenStoreOptions {
  /** Client TLS for an `etcd://` URL: the cluster CA and this component's certificate (its CN is the etcd user). */
  etcdTls?: EtcdTls;
  /** Accept an `etcd://` URL without TLS or authentication. */
  insecure?: boolean;
}

function parseUrl(raw: string): URL {
  try {
    return new URL(raw);
  } catch {
    throw new StoreError(StoreErrorCode.InvalidUrl, `store URL "${raw}" is not a URL; use one of: ${supportedStoreUrls().join(', ')}`);
  }
}

const DRIVERS: Record<string, Driver> = {
  'sqlite:': {
    example: 'sqlite:///var/lib/berth/state.db',
    open(raw) {
      const url = parseUrl(raw);
      if (url.host !== '') {
        throw new StoreError(StoreErrorCode.InvalidUrl, `store URL ${raw}: sqlite takes an absolute path (sqlite:///path/state.db), not a host`);
      }
      const path = decodeURIComponent(url.pathname);
      if (path === '' || path === '/' || path.endsWith('/')) {
        throw new StoreError(StoreErrorCode.InvalidUrl, `store URL ${raw}: missing the database file path`);
      }
      const sync = url.searchParams.get('sync');
      if (sync !== null && sync !== 'full' && sync !== 'normal') {
        throw new StoreError(StoreErrorCode.InvalidUrl, `store URL ${raw}: sync must be full or normal`);
      }
      return new SqliteStore({ path: resolve(path), ...(sync ? { synchronous: sync } : {}) });
    },
  },
  'etcd:': {
    example: 'etcd://127.0.0.1:2379,127.0.0.2:2379',
    // Parsed by hand: a list of hosts is not a WHATWG URL.
    open(raw, options) {
      const hosts = raw.slice('etcd://'.length).replace(/\/+$/, '');
      const endpoints = hosts.split(',').map((h) => h.trim());
      for (const e of endpoints) {
        const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(e);
        if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
          throw new StoreError(StoreErrorCode.InvalidUrl, `store URL ${raw}: endpoint "${e}" is not host:port`);
        }
      }
      if (options.etcdTls) return new EtcdStore({ endpoints, tls: options.etcdTls });
      if (!options.insecure) {
        throw new StoreError(
          StoreErrorCode.Insecure,
          `store URL ${raw} is an etcd without TLS or authentication: whoever reaches it can read every app's config ` +
            'and write units that run code as root on every machine. Start a secured cluster with berth up --cluster-init ' +
            '(first server) or berth up --server URL --token TOKEN (the others), or pass --store-insecure to accept an open etcd.',
        );
      }
      return new EtcdStore({ endpoints });
    },
  },
  'memory:': {
    example: 'memory://',
    // The SQLite engine on a private in-memory database: same code, same guarantees, no file.
    open: () => new SqliteStore({ path: ':memory:' }),
  },
};

export function supportedStoreUrls(): string[] {
  return Object.values(DRIVERS).map((d) => d.example);
}

/**
 * Opens the store a URL names. Throws `invalid_store_url` naming the problem and the accepted forms,
 * and `store_insecure` for an etcd without `etcdTls` unless `insecure` accepts it.
 */
export function openStore(raw: string, options: OpenStoreOptions = {}): Store {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw)?.[1];
  if (scheme === undefined) parseUrl(raw);
  const driver = DRIVERS[`${scheme?.toLowerCase()}:`];
  if (!driver) {
    throw new StoreError(StoreErrorCode.InvalidUrl, `store URL "${raw}": unknown scheme ${scheme}; use one of: ${supportedStoreUrls().join(', ')}`);
  }
  return driver.open(raw, options);
}
