import { connect } from 'node:net';

/**
 * A web dyno is up when its port accepts a connection at its address. In its own namespace at an
 * overlay address only the dyno can listen there, so the port answering is the dyno answering.
 */
export async function waitForPort(address: string, port: number, timeoutMs: number, abandon: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (abandon()) throw new Error('the dyno exited before it was up');
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: address, port });
      // A dropped SYN would otherwise hang until the kernel gives up (minutes).
      s.setTimeout(1000, () => {
        s.destroy();
        resolve(false);
      });
      s.once('connect', () => {
        s.end();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    // Most apps bind within a few hundred ms: poll briskly (a refused connect is cheap).
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`Web process failed to bind to $PORT within ${Math.round(timeoutMs / 1000)} seconds of launch`);
}
