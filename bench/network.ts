/**
 * Network benchmark (`npm run bench:network`, issue 11), in one run, each figure against a
 * reference measured in the same run on the same machine:
 *
 * 1. dyno-to-dyno TCP throughput (iperf3) across two lab hosts over VXLAN and over host-gw, against
 *    host-to-host on the same underlay (goal ≥ 0.8×) — bench/network-lab.ts;
 * 2. the time one machine takes from 1,000 address records written to the store until its nftables
 *    policy holds them (and 1,000 deletions), against `nft -f` of the same elements — ditto;
 * 3. a dyno's start (scale 0 → 1 until it answers through the router) in its own namespace behind
 *    the overlay, against the host-port path (goal ≤ 1.15×) — bench/network-dyno.ts;
 * 4. the router's throughput (wrk) to that dyno, against the host-port path (goal ≥ 0.97×).
 *
 * Rounds interleave each figure with its reference, alternating which goes first; medians are
 * shown. `BENCH_ROUNDS` sets the rounds (default 3); `BENCH_ONLY=router` runs only 3 and 4, for
 * repeated runs of the router figure without the labs' minutes. Needs root, iproute2, nftables,
 * iperf3, wrk, etcd, nginx and bubblewrap. Labs, etcd, namespaces, nft tables and dynos are
 * removed at the end, on failure and on Ctrl-C too.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { dynoRound, makeSlug, type DynoRound, type Path } from './network-dyno.js';
import { runLab, type PolicyResult, type ThroughputResult } from './network-lab.js';
import { printTable, runBenchmark } from './lib.js';

const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3) || 3);
const ONLY = process.env.BENCH_ONLY ?? '';
const IPERF_S = 5;
const WRK_S = 5;
/** Timed starts per stack (each round builds a fresh stack per path). */
const STARTS = 3;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

/** A tool's first line of `--version` (wrk prints it with a usage and exits 1). */
function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.replace(/\s+Copyright.*$/, '').trim() || `${cmd}: ?`;
}

/** The table's rows: each figure, its reference, the ratio and goal, and every round's samples. */
function report(throughput: ThroughputResult[], policy: PolicyResult | undefined, rounds: DynoRound[]): string[][] {
  const of = (p: Path): DynoRound[] => rounds.filter((r) => r.path === p);
  const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  const f = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : '-');
  const each = (xs: number[], d = 0): string => xs.map((x) => f(x, d)).join(' / ');
  const rows: string[][] = [];
  for (const t of throughput) {
    const [o, u] = [median(t.overlay), median(t.underlay)];
    rows.push([`dyno → dyno across 2 hosts, ${t.backend} (Gbit/s)`, f(o, 2), 'host → host, same underlay', f(u, 2), f(o / u, 3), '≥ 0.8', met(o / u >= 0.8), `${each(t.overlay, 2)} | ${each(t.underlay, 2)}`]);
  }
  const [sNs, sHp] = [median(of('namespace').flatMap((r) => r.starts)), median(of('host-port').flatMap((r) => r.starts))];
  rows.push(['dyno start, scale 0 → 1 → 200 via router (ms)', f(sNs), 'host-port dyno (no namespace)', f(sHp), f(sNs / sHp, 3), '≤ 1.15', met(sNs / sHp <= 1.15), `${each(of('namespace').flatMap((r) => r.starts))} | ${each(of('host-port').flatMap((r) => r.starts))}`]);
  const [rNs, rHp] = [median(of('namespace').map((r) => r.rps)), median(of('host-port').map((r) => r.rps))];
  rows.push(['router → dyno, wrk 50 conns (req/s)', f(rNs), 'router → host-port dyno', f(rHp), f(rNs / rHp, 3), '≥ 0.97', met(rNs / rHp >= 0.97), `${each(of('namespace').map((r) => r.rps))} | ${each(of('host-port').map((r) => r.rps))}`]);
  // Each round's two runs are adjacent in time: their ratio cancels load that drifts over the run
  // (other work on the machine moves req/s by far more than the overlay does).
  const paired = of('namespace').map((r, i) => r.rps / (of('host-port')[i]?.rps ?? NaN));
  rows.push(['  router → dyno, ratio within each round', '', '', '', f(median(paired), 3), '', '', each(paired, 3)]);
  const lat = (p: Path): string => `${f(median(of(p).map((r) => r.p50Ms)), 2)} / ${f(median(of(p).map((r) => r.p99Ms)), 2)}`;
  rows.push(['  router → dyno p50 / p99 (ms)', lat('namespace'), '  host-port p50 / p99', lat('host-port'), '', '', '', '']);
  if (!policy) return rows;
  const [pa, pd, fa, fd] = [median(policy.add), median(policy.del), median(policy.floorAdd), median(policy.floorDel)];
  rows.push(['1,000 policy adds: store → nft map (ms)', f(pa), 'nft -f, same elements, 1 txn', f(fa, 1), f(pa / fa, 1), '-', '', `${each(policy.add)} | ${each(policy.floorAdd, 1)}`]);
  rows.push(['1,000 policy deletes: store → nft map (ms)', f(pd), 'nft -f, same elements, 1 txn', f(fd, 1), f(pd / fd, 1), '-', '', `${each(policy.del)} | ${each(policy.floorDel, 1)}`]);
  rows.push(['  of which the etcd writes, adds / deletes (ms)', `${f(median(policy.writeAdd))} / ${f(median(policy.writeDel))}`, '  one poll of the map (resolution)', f(policy.pollMs, 1), '', '', '', '']);
  return rows;
}

async function main(): Promise<void> {
  if (ONLY !== '' && ONLY !== 'router') throw new Error(`BENCH_ONLY=${ONLY}: the only part that runs alone is "router"`);
  if (process.getuid?.() !== 0) throw new Error('bench:network needs root (namespaces, routes, nftables)');
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), kernel ${release()}, node ${process.version}, ${version('iperf3', ['--version'])}, ${version('wrk', ['--version'])}, ${version('nft', ['--version'])}`);
  console.log(`${ROUNDS} interleaved rounds (median shown): iperf3 ${IPERF_S} s after 1 s left out; ${STARTS} starts per path per round; wrk ${WRK_S} s, 50 connections, after 1 s warm-up`);
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-network-'));
  // Dyno uids must traverse the temp root to reach their work dirs inside it.
  chmodSync(dir, 0o755);
  const t0 = Date.now();
  const cleanups = new Set<() => Promise<void>>();
  // Ctrl-C would otherwise leave labs, etcd, dynos and the overlay's table behind. `on`, not
  // `once`: tsx passes the terminal's SIGINT on again, and a second one must not kill the cleanup.
  let interrupted = false;
  const interrupt = (): void => {
    if (interrupted) return;
    interrupted = true;
    void Promise.allSettled([...cleanups].map((c) => c()))
      .then(() => rmSync(dir, { recursive: true, force: true }))
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupt).on('SIGTERM', interrupt);
  try {
    const throughput: ThroughputResult[] = [];
    let policy: PolicyResult | undefined;
    for (const backend of ONLY === 'router' ? [] : (['vxlan', 'host-gw'] as const)) {
      const r = await runLab({ backend, rounds: ROUNDS, seconds: IPERF_S, cleanups, ...(backend === 'host-gw' ? { policy: { rounds: ROUNDS } } : {}) });
      throughput.push(r.throughput);
      policy = r.policy ?? policy;
    }
    if (!policy && ONLY !== 'router') throw new Error('the policy changes were not measured');

    const slug = await makeSlug(dir);
    const paths: Path[] = ['host-port', 'namespace'];
    // JIT, page cache and the sandbox's first cgroups: one untimed start per path first.
    for (const p of paths) await dynoRound(p, join(dir, `warm-${p}`), slug, { starts: 1, seconds: 1, label: 'warm-up', cleanups });
    const rounds: DynoRound[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? paths : [...paths].reverse();
      for (const p of order) rounds.push(await dynoRound(p, join(dir, `${p}-${round}`), slug, { starts: STARTS, seconds: WRK_S, label: `round ${round + 1}`, cleanups }));
    }
    const rows = report(throughput, policy, rounds);
    console.log('');
    printTable(['measure', 'berth', 'reference', 'ref', 'ratio', 'goal', '', 'rounds: berth | ref'], rows);
    const retrans = throughput.map((t) => `${t.backend} ${t.retransmits}`).join(', ');
    console.log(`\n${retrans ? `iperf3 retransmits in the median overlay round: ${retrans}. ` : ''}Run took ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
    // Errors measured as throughput make a benchmark lie: the table is printed, then the run fails.
    const failed = rounds.filter((r) => r.non2xx > 0 || r.errors > 0);
    if (failed.length) throw new Error(`wrk saw failed requests: ${failed.map((r) => `${r.path}: ${r.non2xx} non-2xx, ${r.errors} socket errors`).join('; ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runBenchmark(main);
