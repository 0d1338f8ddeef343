import { connect, createServer } from 'node:net';

/** How the agent finds a free host port for a web dyno and tells when the dyno listens on it. */

/** Nothing on the host is bound to the port right now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '0.0.0.0', () => srv.close(() => resolve(true)));
  });
}

/** A web dyno is up when its port accepts a connection — and the listener is the dyno itself. */
export async function waitForPort(port: number, timeoutMs: number, abandon: () => boolean, owned: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (abandon()) throw new Error('the dyno exited before it was up');
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok && (await owned())) return;
    // Most apps bind within a few hundred ms: poll briskly (a connect on loopback is cheap).
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`Web process failed to bind to $PORT within ${Math.round(timeoutMs / 1000)} seconds of launch`);
}
