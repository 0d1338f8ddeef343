import { openStore } from '../../src/store/index.js';
import { describeStoreConformance } from './conformance.js';

describeStoreConformance('memory', { restart: false }, async () => {
  const store = openStore('memory://');
  return {
    // One in-process database: every "client" is the same store.
    open: async () => store,
    liveWatchSurvivesRestart: false,
    teardown: async () => store.close(),
  };
});
