import { openStore, type Store } from '../../src/store/index.js';
import { EtcdServer } from '../support/etcd-server.js';
import { describeStoreConformance } from './conformance.js';

// The same contract over TLS with a client certificate and etcd auth on, as a Berth cluster runs it.
describeStoreConformance('etcd+tls', { restart: true }, async () => {
  const server = await EtcdServer.start({ secure: true });
  const open: Store[] = [];
  return {
    open: async () => {
      const s = openStore(server.url, { etcdTls: server.tls });
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
