import { afterAll, beforeAll, describe } from 'vitest';
import { kvCases } from './conformance/kv.js';
import type { StoreHarness, SuiteContext } from './conformance/helpers.js';
import { watchLeaseCases } from './conformance/watch-lease.js';

export type { StoreHarness } from './conformance/helpers.js';

/**
 * The store contract's executable specification, written once and run against every backend
 * (`test/store/<backend>.test.ts`, one line each). `capabilities.restart` says whether the backend
 * has a restart to survive; it is known when tests are registered, before the harness exists.
 */
export function describeStoreConformance(name: string, capabilities: { restart: boolean }, makeHarness: () => Promise<StoreHarness>): void {
  describe(`store conformance: ${name}`, () => {
    const ctx = {} as SuiteContext;
    beforeAll(async () => {
      ctx.h = await makeHarness();
      ctx.store = await ctx.h.open();
    });
    afterAll(async () => {
      await ctx.store?.close();
      await ctx.h?.teardown();
    });
    kvCases(ctx);
    watchLeaseCases(ctx, capabilities);
  });
}
