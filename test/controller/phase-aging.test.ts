import { describe, expect, it } from 'vitest';
import { PhaseSlots } from '../../src/controller/services/phase-slots.js';

describe('release-phase slots', () => {
  it("let a background phase that waited past the aging time go before a newer push's", async () => {
    const slots = new PhaseSlots(1, 1, 50);
    const first = await slots.turn('app-a', 1, { owner: 'a' });
    if (!first.run) throw new Error('the first phase should run at once');
    const order: string[] = [];
    // A rollback's phase waits, then a push's phase asks: pushes normally go first.
    const rollback = slots.turn('app-b', 1, { owner: 'b', background: true }).then((t) => (order.push('rollback'), t));
    await new Promise((r) => setTimeout(r, 100));
    const push = slots.turn('app-c', 1, { owner: 'c' }).then((t) => (order.push('push'), t));
    first.done();
    const next = await Promise.race([rollback, push]);
    expect(order).toEqual(['rollback']);
    if (next.run) next.done();
    const last = await push;
    if (last.run) last.done();
    expect(order).toEqual(['rollback', 'push']);
  });

  it('still put a push before a background phase that has not waited long', async () => {
    const slots = new PhaseSlots(1, 1, 60_000);
    const first = await slots.turn('app-a', 1, { owner: 'a' });
    if (!first.run) throw new Error('the first phase should run at once');
    const order: string[] = [];
    const rollback = slots.turn('app-b', 1, { owner: 'b', background: true }).then((t) => (order.push('rollback'), t));
    const push = slots.turn('app-c', 1, { owner: 'c' }).then((t) => (order.push('push'), t));
    first.done();
    const next = await push;
    expect(order).toEqual(['push']);
    if (next.run) next.done();
    const last = await rollback;
    if (last.run) last.done();
  });
});
