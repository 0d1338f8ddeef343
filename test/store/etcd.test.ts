import { openStore, type Store } from '../../src/store/index.js';
import { EtcdServer } from '../support/etcd-server.js';
import { describeStoreConformance } from './conformance.js';

describeStoreConformance('etcd', { restart: true }, async () => {
  const server = await EtcdServer.start();
  const open: Store[] = [];
  return {
    open: async () => {
      const s = openStore(server.url, { insecure: true });
      open.push(s);
      return s;
    },
    restart: () => server.restart(),
    liveWatchSurvivesRestart: true,
    teardown: async () => {
      for (const s of open.splice(0)) await s.close();
      await server.stop();
    },
  };
});
