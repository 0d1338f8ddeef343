import { defineConfig } from 'vitest/config';

/** Suites that put the machine under sustained load (autocannon, many dynos): run last, alone. */
const LOAD = ['test/e2e/zero-downtime.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites start real etcd processes; two cores cannot run many at once.
    maxWorkers: 2,
    reporters: ['default', './test/support/summary-reporter.ts'],
    // 50 connections of load starve whatever shares the two cores with them (a `berth up` on etcd
    // once took 30 s to start beside it): the load suite gets the machine to itself, after the rest.
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: LOAD, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'load', include: LOAD, sequence: { groupOrder: 1 } } },
    ],
  },
});
