import type { Store } from '../store/index.js';
import { list } from './codec.js';
import { keys } from './keys.js';
import { codecs } from './records.js';

/**
 * How a server reaches the other servers of its cluster (slug copies, log fan-out): the port the
 * builder and the controller are given; the node builds the real one from the store's
 * `/berth/servers/` records and this machine's credential.
 */
export interface PeerServer {
  /** Machine id (the key under /berth/servers/). */
  id: string;
  name: string;
  /** Its API, as other machines reach it (`ServerRecord.api_url`). */
  url: string;
}

export interface ClusterPeers {
  /** This machine's id. */
  readonly self: string;
  /** Live servers other than this one. */
  servers(): Promise<PeerServer[]>;
  /** Headers that authenticate this machine to another's `/internal/` routes (`config: { cluster: true | 'server' }`). */
  headers(): Record<string, string>;
}

/**
 * The real peers: the live `/berth/servers/` records (one range per call, proportional to the
 * number of servers), and this machine's credential from its join.
 */
export function storePeers(store: Store, self: string, credential: string): ClusterPeers {
  return {
    self,
    async servers() {
      const servers = await list(store, keys.servers(), codecs.server);
      return servers.filter((s) => s.value.id !== self).map((s) => ({ id: s.value.id, name: s.value.name, url: s.value.api_url.replace(/\/+$/, '') }));
    },
    headers: () => ({ authorization: `Bearer ${credential}` }),
  };
}
