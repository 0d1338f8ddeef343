import { expect, it } from 'vitest';
import { freePort } from '../../support/ports.js';
import { answers, close, listen, settledWithin, until, type SuiteContext } from './helpers.js';

const MiB = 1024 * 1024;

/** Start, output, environment, ports, exits, stops and the memory limit: what the agent relies on. */
export function lifecycleCases(ctx: SuiteContext): void {
  it('starts a dyno with its id and a pid; exited settles with the code of a command that exits on its own', async () => {
    const ok = await ctx.start(ctx.h.commands.exit(0));
    expect(ok.dyno.id).toBe(ok.spec.id);
    expect(Number.isInteger(ok.dyno.pid) && ok.dyno.pid > 0).toBe(true);
    expect(await ok.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(await (await ctx.start(ctx.h.commands.exit(3))).dyno.exited).toEqual({ code: 3, oomKilled: false });

    // Not before the command is done.
    const later = await ctx.start(ctx.h.commands.exitAfter(600, 4));
    expect(await settledWithin(later.dyno.exited, 200)).toBe('pending');
    expect(await later.dyno.exited).toEqual({ code: 4, oomKilled: false });
  });

  it('refuses a second start with the id of a dyno still running', async () => {
    const first = await ctx.start(ctx.h.commands.ignoreSigterm);
    await expect(ctx.start(ctx.h.commands.exit(0), { id: first.spec.id })).rejects.toThrow();
    expect(await settledWithin(first.dyno.exited, 100)).toBe('pending');
  });

  it('hands onOutput each line without its newline, stdout and stderr apart, the unterminated last one by the time exited settles', async () => {
    const d = await ctx.start(ctx.h.commands.output);
    expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
    // A line written in two pieces is one line; \r\n is a newline too.
    expect(d.out('stdout')).toEqual(['one', 'two', '', 'partial', 'last']);
    expect(d.out('stderr')).toEqual(['oops']);
  });

  it('gives the command its config vars, DYNO and PS, and PORT on a web dyno, which config vars cannot override', async () => {
    const port = await freePort();
    const names = ['GREETING', 'DYNO', 'PS', 'PORT'];
    const web = await ctx.start(ctx.h.commands.env(names), { dyno: 'web.1', port, env: { GREETING: 'hello', DYNO: 'evil', PS: 'evil', PORT: '1' } });
    expect(await web.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(web.out()).toEqual(['GREETING=hello', 'DYNO=web.1', 'PS=web.1', `PORT=${port}`]);

    const worker = await ctx.start(ctx.h.commands.env(names), { dyno: 'worker.2', env: { GREETING: 'hi there' } });
    expect(await worker.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(worker.out()).toEqual(['GREETING=hi there', 'DYNO=worker.2', 'PS=worker.2', 'PORT=<unset>']);
  });

  it('serves on its PORT; exits non-zero when something else holds the port', async () => {
    const port = await freePort();
    const d = await ctx.start(ctx.h.commands.serve, { port });
    await until('listening', () => (d.out().includes('listening') ? true : undefined));
    expect(await answers(port)).toBe(true);
    await d.dyno.stop(5000);
    expect(await answers(port)).toBe(false);

    const taken = await freePort();
    const squatter = await listen(taken, '0.0.0.0');
    try {
      const blocked = await ctx.start(ctx.h.commands.serve, { port: taken });
      const exit = await blocked.dyno.exited;
      expect(exit.code).not.toBe(0);
      expect(exit.code).not.toBeNull();
      expect(blocked.out()).not.toContain('listening');
    } finally {
      await close(squatter);
    }
  });

  it('stops with SIGTERM: a command that shuts down gracefully reports its own code, and its port is free once exited has settled', async () => {
    const port = await freePort();
    const d = await ctx.start(ctx.h.commands.serve, { port });
    await until('listening', () => (d.out().includes('listening') ? true : undefined));
    let exitedFirst = false;
    void d.dyno.exited.then(() => (exitedFirst = true));
    const t0 = Date.now();
    await d.dyno.stop(20_000);
    expect(exitedFirst).toBe(true);
    // Well within the grace period: nothing waited for a kill.
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(d.out()).toContain('graceful');
    expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
    // The agent hands the port to the next dyno.
    await close(await listen(port, '0.0.0.0'));
  });

  it('kills a command that ignores SIGTERM once graceMs has passed; a kill has no exit code', async () => {
    const d = await ctx.start(ctx.h.commands.ignoreSigterm);
    await until('up', () => (d.out().includes('up') ? true : undefined));
    const t0 = Date.now();
    await d.dyno.stop(500);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(d.out()).toContain('ignored TERM');
    expect(await d.dyno.exited).toEqual({ code: null, oomKilled: false });
  });

  it('kills at once for stop(0), without SIGTERM first', async () => {
    const d = await ctx.start(ctx.h.commands.ignoreSigterm);
    await until('up', () => (d.out().includes('up') ? true : undefined));
    const t0 = Date.now();
    await d.dyno.stop(0);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(d.out()).not.toContain('ignored TERM');
    expect(await d.dyno.exited).toEqual({ code: null, oomKilled: false });
  });

  it('takes a stop after the exit, and two stops at once, in its stride', async () => {
    const gone = await ctx.start(ctx.h.commands.exit(5));
    await gone.dyno.exited;
    const t0 = Date.now();
    await gone.dyno.stop(10_000);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await gone.dyno.exited).toEqual({ code: 5, oomKilled: false });

    const port = await freePort();
    const twice = await ctx.start(ctx.h.commands.serve, { port });
    await until('listening', () => (twice.out().includes('listening') ? true : undefined));
    await Promise.all([twice.dyno.stop(10_000), twice.dyno.stop(10_000)]);
    expect(await twice.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(twice.out().filter((l) => l === 'graceful')).toHaveLength(1);
  });

  it('kills a command that goes over memoryBytes and says it was the memory limit; one under it runs', async () => {
    const under = await ctx.start(ctx.h.commands.allocate(8 * MiB), { memoryBytes: 128 * MiB });
    expect(await under.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(under.out()).toContain('allocated');

    const over = await ctx.start(ctx.h.commands.allocate(256 * MiB), { memoryBytes: 128 * MiB });
    const exit = await over.dyno.exited;
    expect(exit.oomKilled).toBe(true);
    expect(exit.code).not.toBe(0);
    expect(over.out()).not.toContain('allocated');
  });

  it('caps /app and /tmp together at diskBytes: a write past it fails with ENOSPC, one under it succeeds', async () => {
    const fill = ctx.h.commands.fill;
    const d = await ctx.start(`${fill('/app', 40)}; ${fill('/tmp', 40)}`, { diskBytes: 64 * MiB });
    expect(await d.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(d.out()).toEqual(['wrote', 'no space']);

    const roomy = await ctx.start(`${fill('/app', 40)}; ${fill('/tmp', 40)}`, { diskBytes: 128 * MiB });
    expect(await roomy.dyno.exited).toEqual({ code: 0, oomKilled: false });
    expect(roomy.out()).toEqual(['wrote', 'wrote']);
  });
}
