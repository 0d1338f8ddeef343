import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type Store } from '../../src/store/index.js';
import { describeStoreConformance } from './conformance.js';

describeStoreConformance('sqlite', { restart: true }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-sqlite-'));
  const url = `sqlite://${join(dir, 'state.db')}`;
  const open: Store[] = [];
  return {
    open: async () => {
      const s = openStore(url);
      open.push(s);
      return s;
    },
    // A restart of the embedded backend is a restart of the process that holds it.
    restart: async () => {
      for (const s of open.splice(0)) await s.close();
    },
    liveWatchSurvivesRestart: false,
    teardown: async () => {
      for (const s of open.splice(0)) await s.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
