import { expect, it } from 'vitest';
import { settledWithin, until, type RuntimeCapabilities, type SuiteContext } from './helpers.js';

const KiB = 1024;

/** Attached one-off dynos: what the one-off runner relies on (input, EOF, backpressure, a terminal). */
export function interactiveCases(ctx: SuiteContext, capabilities: RuntimeCapabilities): void {
  it('gives input to interactive dynos only', async () => {
    const plain = await ctx.start(ctx.h.commands.exit(0));
    expect(plain.dyno.input).toBeUndefined();
    const attached = await ctx.start(ctx.h.commands.exit(0), { interactive: {} });
    expect(attached.dyno.input).toBeDefined();
    await Promise.all([plain.dyno.exited, attached.dyno.exited]);
  });

  it('hands onData output as it comes, a prompt without its newline included, and the command reads what is written', async () => {
    const d = await ctx.start(ctx.h.commands.prompt, { interactive: {} });
    await until('the prompt', () => (d.text('stdout') === 'name? ' ? true : undefined));
    // One line read: the rest stays unread.
    expect(d.dyno.input?.write('bob\nnot read\n')).toBe(true);
    expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(d.text('stdout')).toBe('name? hi bob\n');
    expect(d.text('stderr')).toBe('bye\n');
    // The log stream still gets lines.
    expect(d.out('stdout')).toEqual(['name? hi bob']);
    expect(d.out('stderr')).toEqual(['bye']);
  });

  it('runs an interactive dyno without tty on no terminal', async () => {
    const d = await ctx.start(ctx.h.commands.ttyCheck, { interactive: {} });
    expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(d.out()).toEqual(['no tty']);
  });

  it('pushes back on input the command has not read yet (write false, then drained), and end() gives EOF after all of it', async () => {
    const d = await ctx.start(ctx.h.commands.count, { interactive: {} });
    const input = d.dyno.input;
    if (!input) throw new Error('an interactive dyno has input');
    const chunk = Buffer.alloc(16 * KiB, 'x');
    let waits = 0;
    for (let i = 0; i < 64; i++) {
      if (!input.write(chunk)) {
        waits++;
        await input.drained();
      }
    }
    input.end();
    expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(waits).toBeGreaterThan(0);
    expect(d.out().map((l) => l.trim())).toEqual([String(64 * 16 * KiB)]);
  });

  it('lets drained and further input settle when the dyno exits without reading', async () => {
    const d = await ctx.start(ctx.h.commands.exitAfter(300, 4), { interactive: {} });
    const input = d.dyno.input;
    if (!input) throw new Error('an interactive dyno has input');
    let full = false;
    for (let i = 0; i < 256 && !full; i++) full = !input.write(Buffer.alloc(16 * KiB, 'y'));
    expect(full).toBe(true);
    const drained = input.drained();
    expect(await d.dyno.exited).toEqual({ code: 4, oomKilled: false });
    expect(await settledWithin(drained.then(() => 'drained'), 5000)).toBe('drained');
    expect(() => input.write('late')).not.toThrow();
    expect(() => input.end()).not.toThrow();
    expect(await settledWithin(input.drained().then(() => 'drained'), 5000)).toBe('drained');
  });

  if (capabilities.tty) {
    it('runs on a terminal of the given size with tty: stderr joins stdout, typed input is echoed, lines lose their \\r', async () => {
      const check = await ctx.start(ctx.h.commands.ttyCheck, { interactive: { tty: { columns: 100, lines: 30 } } });
      expect(await check.dyno.exited).toEqual({ code: 0, oomKilled: false });
      expect(check.out()).toContain('tty 30 100');

      const d = await ctx.start(ctx.h.commands.prompt, { interactive: { tty: { columns: 80, lines: 24 } } });
      await until('the prompt', () => (d.text('stdout').includes('name? ') ? true : undefined));
      d.dyno.input?.write('bob\n');
      expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
      const text = d.text('stdout');
      expect(d.text('stderr')).toBe('');
      expect(text.indexOf('bob')).toBeGreaterThan(text.indexOf('name? '));
      expect(text.indexOf('hi bob')).toBeGreaterThan(text.indexOf('bob'));
      expect(text).toContain('bye');
      expect(d.out('stdout')).toEqual(expect.arrayContaining(['hi bob', 'bye']));
      expect(d.out('stderr')).toEqual([]);
    });

    it('gives EOF on a tty once the line written before end() is read', async () => {
      const d = await ctx.start(ctx.h.commands.count, { interactive: { tty: { columns: 80, lines: 24 } } });
      d.dyno.input?.write('abc\n');
      d.dyno.input?.end();
      expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
      expect(d.out().map((l) => l.trim())).toContain('4');
    });
  }
}
