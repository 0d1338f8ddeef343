import { describe, expect, it } from 'vitest';
import { Gate } from '../../src/builder/push.js';

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 10));

describe('build slots (Gate)', () => {
  it('gives one app at most one slot: another app gets the next one before its second push', async () => {
    const gate = new Gate(1);
    const order: string[] = [];
    const enter = (name: string, app: string) =>
      gate.enter(app, () => undefined).then((leave) => {
        order.push(name);
        return leave;
      });
    const a1 = await enter('a1', 'app-a');
    const a2 = enter('a2', 'app-a');
    await tick();
    const b1 = enter('b1', 'app-b');
    await tick();
    expect(order).toEqual(['a1']);
    a1?.();
    // a2 had to wait for a1 before it could even ask for a slot; b1 asked first.
    const leaveB = await b1;
    expect(order).toEqual(['a1', 'b1']);
    leaveB?.();
    (await a2)?.();
    expect(order).toEqual(['a1', 'b1', 'a2']);
  });

  it('refuses a third push to one app while one builds and one waits, and takes pushes again once they are done', async () => {
    const gate = new Gate(4);
    const first = await gate.enter('app-a', () => undefined);
    const second = gate.enter('app-a', () => undefined);
    await tick();
    await expect(gate.enter('app-a', () => undefined)).resolves.toBeUndefined();
    // Other apps are not affected.
    const other = await gate.enter('app-b', () => undefined);
    expect(other).toBeTypeOf('function');
    other?.();
    first?.();
    const leave2 = await second;
    leave2?.();
    // A leave called twice does not free a slot twice.
    leave2?.();
    const again = await gate.enter('app-a', () => undefined);
    expect(again).toBeTypeOf('function');
    again?.();
  });
});
