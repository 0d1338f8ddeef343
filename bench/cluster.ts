/**
 * Cluster failover benchmark (`npm run bench:cluster`, issue 12): three servers on three
 * network-namespace hosts (bench/cluster-lab.ts), an app at web=3; each round SIGKILLs the whole
 * machine that holds the scheduler's leadership and times, from the kill, as seen from outside:
 *
 * (a) a new scheduler leader: the oldest candidacy under /berth/leader/scheduler/ is another node's;
 * (b) API writes accepted: the first 200 to a PATCH config-vars through a surviving server;
 * (c) every lost dyno up elsewhere: the app's 3 web dynos `up`, none on the dead machine;
 *
 * against the reference measured in the same round: the first time a surviving etcd member reports
 * a leader that is not the dead member (its own election, when the dead machine led etcd too).
 * Rounds alternate between the dead machine leading etcd as well (its leadership moved there with
 * `etcdctl move-leader` first) and not (moved away). All four are polled at once, every 50 ms, each
 * probe independent of the others' slow answers. Between rounds the dead machine comes back with its
 * data dir and rejoins, and the next round waits until three etcd voters answer and every dyno is up.
 *
 * `BENCH_ROUNDS` (default 10: five of each kind, about 2 minutes). Needs root (namespaces), etcd/etcdctl, nginx, bubblewrap.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg, release } from 'node:os';
import { performance } from 'node:perf_hooks';
import { APP, BenchCluster, EtcdViews, NAMES, WRITE_APP, allUp, schedulerLeader, type Name } from './cluster-lab.js';
import { printTable, runBenchmark, sleep, step } from './lib.js';

const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 10) || 10);
const TTL_S = 2;
const POLL_MS = 50;
/** Probes of one kind at once: a stalled one never delays the next by more than a poll. */
const IN_FLIGHT = 4;
const ROUND_TIMEOUT_MS = 60_000;
const WHOLE_TIMEOUT_MS = 150_000;
/** After a move of etcd's leadership or a rejoin: leases renewed, watches re-established. */
const SETTLE_MS = 3000;

interface Round {
  n: number;
  killed: Name;
  /** Observed right before the kill, from the survivors' own status. */
  etcdLeaderDied: boolean;
  lost: number;
  newLeader: string;
  /** ms from the kill; NaN: not within the round's timeout. */
  etcd: number;
  leader: number;
  write: number;
  dynos: number;
  /** s from the dead machine's restart (same data dir) until the cluster is whole again. */
  rejoin: number;
}

/**
 * Starts `probe` every POLL_MS (at most IN_FLIGHT pending) until one answers true: the ms from
 * `t0` to that answer, or NaN past the timeout.
 */
function firstTrue(t0: number, probe: () => Promise<boolean>): Promise<number> {
  return new Promise((resolve) => {
    let pending = 0;
    let done = false;
    const finish = (v: number): void => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(deadline);
      resolve(v);
    };
    const tick = (): void => {
      if (done || pending >= IN_FLIGHT) return;
      pending++;
      probe()
        .then((ok) => ok && finish(performance.now() - t0), () => undefined)
        .finally(() => pending--);
    };
    const timer = setInterval(tick, POLL_MS);
    const deadline = setTimeout(() => finish(NaN), ROUND_TIMEOUT_MS);
    tick();
  });
}

/** True as soon as any of `checks` answers true; false once all have answered otherwise. */
function anyTrue(checks: Promise<boolean>[]): Promise<boolean> {
  return new Promise((resolve) => {
    let left = checks.length;
    for (const c of checks) {
      c.then((ok) => (ok ? resolve(true) : undefined), () => undefined).finally(() => --left === 0 && resolve(false));
    }
  });
}

/** Moves etcd's leadership onto (`onto`) or off (`!onto`) the machine `name`, and waits until it is there. */
async function arrangeEtcdLeader(c: BenchCluster, name: Name, onto: boolean): Promise<void> {
  const via = NAMES.find((n) => n !== name) as Name;
  const members = await c.members(via);
  const target = members.find((m) => m.name === name);
  const leader = members.find((m) => m.leader);
  if (!target || !leader) throw new Error(`etcd members without ${name} or without a leader: ${JSON.stringify(members)}`);
  if ((leader.id === target.id) === onto) return;
  const to = onto ? target : (members.find((m) => m.id !== target.id && !m.learner) as typeof target);
  step(`moving etcd's leadership from ${leader.name} to ${to.name}`);
  await c.moveEtcdLeader(to.id, via);
  await sleep(SETTLE_MS);
}

async function round(c: BenchCluster, n: number, etcdToo: boolean): Promise<Round> {
  // Whoever leads the scheduler now, with etcd's leadership arranged beside it or away from it;
  // moving etcd's leader does not move the scheduler's, but check, and try again if it did.
  const setup = c.openStore([...NAMES], 's1');
  let killedId = '';
  let killed: Name | undefined;
  let ids = new Map<string, string>();
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      ids = await c.machines('s1');
      killedId = (await schedulerLeader(setup)) ?? '';
      killed = ids.get(killedId) as Name | undefined;
      if (!killed || !NAMES.includes(killed)) throw new Error(`the scheduler leader ${killedId} is no server of the lab`);
      await arrangeEtcdLeader(c, killed, etcdToo);
      if ((await schedulerLeader(setup)) === killedId) break;
    }
  } finally {
    await setup.close();
  }
  if (!killed) throw new Error('no scheduler leader');
  const dead = killed;
  const survivors = NAMES.filter((x) => x !== dead);
  const [writeVia, readVia] = survivors as [Name, Name];
  const deadMember = (await c.members(writeVia)).find((m) => m.name === dead);
  if (!deadMember) throw new Error(`no etcd member named ${dead}`);

  // Every client connected and every path warm before the kill, so the figures hold no dial.
  const views = new EtcdViews(new Map(survivors.map((s) => [s, c.etcdEndpoint(s)])), c.tls(writeVia));
  const store = c.openStore(survivors, writeVia);
  try {
    const before = await Promise.all(survivors.map((s) => views.status(s, 2000)));
    const etcdLeaderDied = before.some((s) => s.leader === deadMember.id);
    await schedulerLeader(store);
    const lost = (await c.dynos(readVia)).filter((d) => d.machine === killedId).length;
    if ((await c.write(writeVia, `warm-${n}`, 10_000)) !== 200) throw new Error(`a write through ${writeVia} failed before the kill`);
    step(`round ${n}: killing ${dead} (scheduler leader${etcdLeaderDied ? ' and etcd leader' : ''}, ${lost} of ${APP}'s dynos)`);

    await c.kill(dead);
    const t0 = performance.now();
    let newLeader = '';
    let writes = 0;
    const [etcd, leader, write, dynos] = await Promise.all([
      firstTrue(t0, () => anyTrue(survivors.map(async (s) => {
        const st = await views.status(s, 1000);
        return st.leader !== '0' && st.leader !== deadMember.id;
      }))),
      firstTrue(t0, async () => {
        const v = await schedulerLeader(store);
        if (!v || v === killedId) return false;
        newLeader = ids.get(v) ?? v;
        return true;
      }),
      firstTrue(t0, async () => (await c.write(writeVia, `${n}-${++writes}`, 10_000)) === 200),
      firstTrue(t0, async () => {
        const ds = await c.dynos(readVia, AbortSignal.timeout(5000));
        return allUp(ds) && ds.every((d) => d.machine !== killedId);
      }),
    ]);
    return { n, killed: dead, etcdLeaderDied, lost, newLeader, etcd, leader, write, dynos, rejoin: NaN };
  } finally {
    views.close();
    await store.close();
  }
}

const median = (xs: number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : 'timeout');
const ratio = (x: number, ref: number): string => (Number.isFinite(x) && Number.isFinite(ref) && ref > 0 ? (x / ref).toFixed(2) : '-');

function report(rounds: Round[]): void {
  const rows: string[][] = rounds.map((r) => [
    `round ${r.n}`, r.killed, r.etcdLeaderDied ? 'yes' : 'no', String(r.lost), r.newLeader || '-',
    ms(r.etcd), ms(r.leader), ms(r.write), ms(r.dynos),
    ...(r.etcdLeaderDied ? [ratio(r.leader, r.etcd), ratio(r.write, r.etcd), ratio(r.dynos, r.etcd)] : ['-', '-', '-']),
    Number.isFinite(r.rejoin) ? r.rejoin.toFixed(1) : '-',
  ]);
  const both = rounds.filter((r) => r.etcdLeaderDied);
  const apart = rounds.filter((r) => !r.etcdLeaderDied);
  // The reference is etcd's own election: only rounds where the dead machine led etcd have one.
  const ref = median(both.map((r) => r.etcd));
  const group = (label: string, rs: Round[], perRound: boolean): string[] => {
    const m = (f: (r: Round) => number): number => median(rs.map(f));
    const q = (f: (r: Round) => number): string => (perRound ? median(rs.map((r) => f(r) / r.etcd)).toFixed(2) : ratio(m(f), ref));
    return [label, '', '', '', '', ms(m((r) => r.etcd)), ms(m((r) => r.leader)), ms(m((r) => r.write)), ms(m((r) => r.dynos)), q((r) => r.leader), q((r) => r.write), q((r) => r.dynos), ''];
  };
  if (both.length) rows.push(group(`median, etcd leader died too (${both.length})`, both, true));
  if (apart.length) rows.push(group(`median, etcd leader survived (${apart.length})`, apart, false));
  console.log('');
  printTable(['round', 'killed', 'etcd leader', 'lost dynos', 'new sched. leader', 'etcd elected ms', '(a) sched. leader ms', '(b) write 200 ms', '(c) dynos up ms', 'a/etcd', 'b/etcd', 'c/etcd', 'rejoin s'], rows);
  console.log(
    `\nms from the SIGKILL of the machine's every process. "etcd elected": a survivor's status names a live leader ` +
      `(when etcd's leader survived there is no election: ~0). Ratios per round, then their median; for rounds whose etcd ` +
      `leader survived, against the median election of the other rounds. (a) and (c) wait for the dead machine's leases ` +
      `(--ttl ${TTL_S} s, renewed every third of it): at least TTL minus the time since the last renewal; when etcd's leader ` +
      `dies too, the new etcd leader renews every lease in full as it takes over, so they last about election + TTL + etcd's ` +
      `election timeout (1 s). "rejoin": from the dead machine's restart with its data dir until three etcd voters answer and every dyno is up. Polled every ${POLL_MS} ms, up to ${IN_FLIGHT} probes of a kind pending.`,
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:cluster needs root (network namespaces)');
  const etcdVersion = execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), kernel ${release()}, node ${process.version}, ${etcdVersion}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`three servers in a network-namespace lab, --ttl ${TTL_S}, ${APP} at web=3, writes to ${WRITE_APP}; ${ROUNDS} rounds, each killing the scheduler leader's machine`);
  const t0 = Date.now();
  let teardown: (() => Promise<void>) | undefined;
  // Ctrl-C would otherwise leave the lab's namespaces and servers behind; `on`: tsx passes SIGINT on again.
  let interrupted = false;
  const interrupt = (): void => {
    if (interrupted) return;
    interrupted = true;
    void (teardown?.() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupt).on('SIGTERM', interrupt);
  const rounds: Round[] = [];
  try {
    const c = await BenchCluster.create({ ttl: TTL_S, onTeardown: (f) => (teardown = f) });
    step('deploying the app');
    await c.deploy();
    await c.untilWhole('s1', WHOLE_TIMEOUT_MS);
    await sleep(SETTLE_MS);
    for (let n = 1; n <= ROUNDS; n++) {
      const r = await round(c, n, n % 2 === 1);
      rounds.push(r);
      step(`round ${n}: etcd ${ms(r.etcd)}, leader ${ms(r.leader)}, write ${ms(r.write)}, dynos ${ms(r.dynos)} ms`);
      step(`round ${n}: restarting ${r.killed} with its data dir`);
      const back = performance.now();
      await c.start(r.killed);
      await c.untilWhole(NAMES.find((x) => x !== r.killed) as Name, WHOLE_TIMEOUT_MS);
      r.rejoin = (performance.now() - back) / 1000;
      step(`round ${n}: ${r.killed} rejoined, cluster whole ${r.rejoin.toFixed(1)} s after its restart`);
      await sleep(SETTLE_MS);
    }
  } finally {
    if (rounds.length) report(rounds);
    console.log(`\nRun took ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
    await teardown?.();
  }
}

runBenchmark(main);
