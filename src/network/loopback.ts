import { createServer } from 'node:net';
import type { Attachment, Networks } from './types.js';

/** A port the kernel hands out on loopback, free when this returns. */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * No namespaces: every dyno on 127.0.0.1 and a port of its own. For the fake runtime's control-loop
 * tests and benchmarks, whose "dynos" are in-process listeners; never for tenant code, which it
 * would leave in the host's network.
 */
export class LoopbackNetwork implements Networks {
  async attachDyno(): Promise<Attachment> {
    const port = await freeLoopbackPort();
    return { address: '127.0.0.1', port, env: { HEROKU_PRIVATE_IP: '127.0.0.1' }, release: () => Promise.resolve() };
  }

  attachBuild(): Promise<Attachment> {
    return Promise.resolve({ address: '127.0.0.1', port: 0, env: {}, release: () => Promise.resolve() });
  }
}
