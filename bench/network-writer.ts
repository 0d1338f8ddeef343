/**
 * A store writer for bench/network.ts, run inside a lab host (the benchmark's own process, in the
 * root namespace, cannot reach the lab's etcd). It holds its connection open, so a timed write
 * pays for the transactions only, not for a process start or a dial.
 *
 *   argv[2]: JSON { store }
 *   stdin:   {"op":"load","records":[[ip, group], …]} | {"op":"put"} | {"op":"del"}
 *   stdout:  one JSON line per command: { ok, ms } or { error }
 */
import { createInterface } from 'node:readline';
import { deleteOp, putOp } from '../src/domain/codec.js';
import { keys } from '../src/domain/keys.js';
import { codecs } from '../src/domain/records.js';
import { MAX_TXN_OPS } from '../src/store/validate.js';
import { openStore } from '../src/store/index.js';

const config = JSON.parse(process.argv[2] ?? '{}') as { store: string };
// The lab's etcd is a plain one: accepted as insecure on purpose.
const store = openStore(config.store, { insecure: true });
let records: [string, number][] = [];
const say = (o: unknown): boolean => process.stdout.write(`${JSON.stringify(o)}\n`);

/** etcd refuses more than 128 operations in one transaction: as few transactions as it allows, all in flight at once. */
async function inTransactions(ops: ReturnType<typeof deleteOp>[]): Promise<void> {
  const chunks: (typeof ops)[] = [];
  for (let i = 0; i < ops.length; i += MAX_TXN_OPS) chunks.push(ops.slice(i, i + MAX_TXN_OPS));
  await Promise.all(chunks.map((success) => store.txn({ compare: [], success })));
}

let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  queue = queue.then(async () => {
    try {
      const cmd = JSON.parse(line) as { op: string; records?: [string, number][] };
      if (cmd.op === 'load') {
        records = cmd.records ?? [];
        // One read first: the connection is up before anything is timed.
        await store.currentRevision();
        return void say({ ok: true });
      }
      const t0 = performance.now();
      if (cmd.op === 'put') await inTransactions(records.map(([ip, group]) => putOp(keys.ip(ip), codecs.ip, { app_id: `bench-${group}`, group, owner: `bench-${group}.web.1@v1`, machine: 'bench-elsewhere' })));
      else await inTransactions(records.map(([ip]) => deleteOp(keys.ip(ip))));
      say({ ok: true, ms: performance.now() - t0 });
    } catch (err) {
      say({ error: String(err) });
    }
  });
});
lines.on('close', () => void queue.then(() => store.close()).finally(() => process.exit(0)));
