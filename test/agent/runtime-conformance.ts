import { afterAll, afterEach, beforeAll, describe } from 'vitest';
import type { RunningDyno } from '../../src/agent/runtime/types.js';
import { makeContext, type RuntimeCapabilities, type RuntimeHarness } from './runtime-conformance/helpers.js';
import { interactiveCases } from './runtime-conformance/interactive.js';
import { lifecycleCases } from './runtime-conformance/lifecycle.js';

export type { RuntimeCapabilities, RuntimeCommands, RuntimeHarness } from './runtime-conformance/helpers.js';

/**
 * The runtime contract (`Runtime`, `DynoSpec`, `RunningDyno` in src/agent/runtime/types.ts) as an
 * executable specification, written once and run against every implementation
 * (`test/agent/<runtime>-runtime.test.ts`, one call each). It covers what the agent and the
 * one-off runner rely on; capabilities name what an implementation truly cannot do.
 */
export function describeRuntimeConformance(name: string, capabilities: RuntimeCapabilities, makeHarness: () => Promise<RuntimeHarness>): void {
  describe(`runtime conformance: ${name}`, () => {
    const started: RunningDyno[] = [];
    const ctx = makeContext(started);
    beforeAll(async () => {
      ctx.h = await makeHarness();
    });
    // Whatever a failed case left running goes with it.
    afterEach(async () => {
      await Promise.all(started.splice(0).map((d) => d.stop(0)));
    });
    afterAll(async () => {
      await ctx.h?.teardown();
    });
    lifecycleCases(ctx);
    interactiveCases(ctx, capabilities);
  });
}
