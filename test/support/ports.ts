import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

// Below the kernel's ephemeral range (32768 up on Debian): a port from there can be taken by any
// outgoing connection's source port between this check and the server binding it, which once
// kept a test's nginx from starting. Above the dyno port ranges tests and benchmarks give agents
// (20000-27999).
const LOW = 28_000;
const HIGH = Math.min(32_768, ephemeralStart());

function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > LOW + 1000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * The slice of [LOW, HIGH) this process picks from: vitest workers (VITEST_POOL_ID 1, 2, …) get
 * disjoint halves, so two suites running side by side never pick the same port.
 */
function slice(): [number, number] {
  const pool = Number(process.env.VITEST_POOL_ID);
  if (!Number.isInteger(pool) || pool < 1) return [LOW, HIGH];
  const half = Math.floor((HIGH - LOW) / 2);
  const from = LOW + ((pool - 1) % 2) * half;
  return [from, from + half];
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

// Callers pick several ports before binding any (a `berth up` takes four): never hand one out twice.
const handedOut = new Set<number>();

/** A port free on loopback now, outside the range the kernel hands out to outgoing connections. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [from, to] = slice();
  if (handedOut.size > (to - from) / 2) handedOut.clear();
  for (let attempt = 0; attempt < 500; attempt++) {
    const port = from + Math.floor(Math.random() * (to - from));
    if (handedOut.has(port)) continue;
    if (await canBind(port, host)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${from}-${to - 1} on ${host}`);
}
