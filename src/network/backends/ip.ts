import { errorMessage, invalid } from '../../domain/errors.js';
import { exec, type Exited } from '../commands.js';
import { formatCidr, isIPv4, isMac, overlaps, sameRange, tryParseCidr, within, type Range } from '../cidr.js';

/**
 * The one way the overlay backends talk to the kernel: `ip` and `bridge` from iproute2, read with
 * `-j` and written in batches (`-batch -` on stdin), since each process start costs ~5 ms and a
 * sync of a hundred peers must stay a handful of processes. With `netns` (a `/run/netns/X` path)
 * every command runs inside that namespace through `nsenter --net=` (test machines are namespaces;
 * production passes none).
 */

/**
 * The route protocol number that marks a route as Berth's (unassigned in iproute2's rt_protos,
 * where 42 is babel and 99 openr). Only routes with it, and inside the driver's own overlay range,
 * are ever listed for deletion, so the host's routes and another platform's never are.
 */
export const BERTH_ROUTE_PROTO = 66;

export type Tool = 'ip' | 'bridge';

export interface BatchLine {
  line: string;
  /** A failure that means "already as wanted", e.g. deleting what is already gone. */
  ignore?: RegExp;
}

/** What a delete of something already gone says (route/neigh: ESRCH or ENOENT; a link: no device). */
export const GONE = /No such process|No such file or directory|Cannot find device|does not exist/;

export class IpCommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed${exitCode === null ? '' : ` (exit ${exitCode})`}: ${stderr.trim() || 'no output'}`);
    this.name = 'IpCommandError';
  }
}

export interface IpRunnerOptions {
  netns?: string;
  /** Per command; default 15 s (a batch of thousands of lines still takes well under one). */
  timeoutMs?: number;
}

export class IpRunner {
  /** Processes started so far: what tests and benchmarks count. */
  commands = 0;

  constructor(private readonly o: IpRunnerOptions = {}) {}

  private async exec(tool: Tool, args: string[], input?: string): Promise<Exited> {
    this.commands++;
    try {
      return await exec(tool, args, { ...(input !== undefined ? { input } : {}), ...(this.o.netns ? { netns: this.o.netns } : {}), timeoutMs: this.o.timeoutMs ?? 15_000 });
    } catch (err) {
      // Not an exit status: the binary is missing, or the timeout killed it.
      throw new IpCommandError(`${tool} ${args.join(' ')}`, null, errorMessage(err));
    }
  }

  /** `tool -j args…`, parsed; what the JSON lists. */
  async json<T>(tool: Tool, args: string[]): Promise<T[]> {
    const r = await this.exec(tool, ['-j', ...args]);
    if (r.code !== 0) throw new IpCommandError(`${tool} -j ${args.join(' ')}`, r.code, r.stderr);
    return r.stdout.trim() ? (JSON.parse(r.stdout) as T[]) : [];
  }

  /**
   * Runs every line in one `tool -force -batch -` (a failed line does not stop the rest) and
   * throws if a line failed for a reason its `ignore` does not cover, naming each failed line.
   */
  async batch(tool: Tool, lines: BatchLine[]): Promise<void> {
    if (lines.length === 0) return;
    const r = await this.exec(tool, ['-force', '-batch', '-'], lines.map((l) => `${l.line}\n`).join(''));
    if (r.code === 0) return;
    const failures = batchFailures(r.stderr);
    const fatal = [...failures].filter(([n, message]) => {
      const l = lines[n - 1];
      return !l || !l.ignore?.test(message);
    });
    // An exit status without any attributable line (a crash, a usage error) is fatal too.
    if (fatal.length === 0 && failures.size > 0) return;
    const detail = fatal.length ? fatal.map(([n, m]) => `line ${n} "${lines[n - 1]?.line ?? '?'}": ${m}`).join('; ') : r.stderr;
    throw new IpCommandError(`${tool} -batch`, r.code, detail);
  }

  /** One `ip -j -force -batch -` of read commands (`route get …`): each line's JSON, in order of output. */
  async batchJson<T>(tool: Tool, lines: string[]): Promise<T[][]> {
    if (lines.length === 0) return [];
    const r = await this.exec(tool, ['-j', '-force', '-batch', '-'], lines.map((l) => `${l}\n`).join(''));
    // A failed query prints nothing on stdout (its reason goes to stderr): callers match answers by content.
    return r.stdout
      .split('\n')
      .filter((s) => s.trim())
      .map((s) => JSON.parse(s) as T[]);
  }
}

/**
 * iproute2's batch mode prints each failure's message(s) followed by `Command failed -:N`.
 * Returns line number → message.
 */
function batchFailures(stderr: string): Map<number, string> {
  const out = new Map<number, string>();
  let pending: string[] = [];
  for (const text of stderr.split('\n')) {
    const m = /^Command failed -:(\d+)$/.exec(text.trim());
    if (m) {
      out.set(Number(m[1]), pending.join(' ').trim());
      pending = [];
    } else if (text.trim()) pending.push(text.trim());
  }
  return out;
}

// --- What `ip -j` prints (only the fields used).

export interface LinkJson {
  ifname: string;
  mtu: number;
  address?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { id?: number; port?: number; local?: string; link?: string; learning?: boolean } };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

export interface RouteJson {
  dst: string;
  gateway?: string;
  prefsrc?: string;
  dev?: string;
  flags?: string[];
  type?: string;
}

/** The interface that carries `publicIp`, from `ip -j addr` output; a coded error when none does. */
export function underlayOf(links: LinkJson[], publicIp: string): LinkJson {
  const link = links.find((l) => l.addr_info?.some((a) => a.family === 'inet' && a.local === publicIp));
  if (!link) throw invalid(`No interface has the address ${publicIp}: the public address must be one of this machine's.`);
  return link;
}

/** Routes Berth made inside `network` (main table), from the kernel, re-checked here. */
export async function listOurRoutes(ip: IpRunner, network: Range, dev?: string): Promise<RouteJson[]> {
  const args = ['route', 'show', 'table', 'main', 'proto', String(BERTH_ROUTE_PROTO), 'root', formatCidr(network)];
  if (dev) args.push('dev', dev);
  const routes = await ip.json<RouteJson>('ip', args);
  return routes.filter((r) => {
    const c = tryParseCidr(r.dst);
    return c !== undefined && within(network, c);
  });
}

/** `10.1.2.3` → `10.1.2.3/32`, as `ip -j` prints host routes bare. */
export function routeKey(dst: string): string {
  return dst.includes('/') ? dst : `${dst}/32`;
}

// --- Peers: shared checks of both backends.

export interface CheckedPeer {
  subnet: Range;
  /** `subnet` as the kernel prints it. */
  key: string;
  publicIp: string;
  vtepMac?: string;
}

/**
 * Errors about one peer said once, not on every periodic re-diff; said again if the peer was fine
 * in between.
 */
export class Complaints {
  private readonly said = new Set<string>();

  once(key: string, say: () => void): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    say();
  }

  clear(key: string): void {
    this.said.delete(key);
  }
}

/**
 * The peers a driver may program: well-formed, inside the overlay (a route outside it would never
 * be listed for removal), not overlapping this machine's own subnet, one per subnet. The rest are
 * logged (once) and skipped.
 */
export function checkPeers(
  peers: { subnet: string; publicIp: string; vtepMac?: string }[],
  own: { network: Range; subnet: Range },
  complaints: Complaints,
  complain: (peer: { subnet: string; publicIp: string }, why: string) => void,
): CheckedPeer[] {
  const out = new Map<string, CheckedPeer>();
  for (const p of peers) {
    const subnet = tryParseCidr(p.subnet);
    const id = `${p.subnet} ${p.publicIp} ${p.vtepMac ?? ''}`;
    let why: string | undefined;
    if (!subnet) why = 'its subnet is not an IPv4 network';
    else if (sameRange(subnet, own.subnet)) {
      continue; // this machine's own subnet: the caller should have left it out; nothing to route
    } else if (overlaps(subnet, own.subnet)) why = "it overlaps this machine's subnet";
    else if (!within(own.network, subnet)) why = `its subnet is outside the overlay ${formatCidr(own.network)}`;
    else if (!isIPv4(p.publicIp)) why = 'its public address is not an IPv4 address';
    else if (p.vtepMac !== undefined && !isMac(p.vtepMac)) why = 'its VTEP MAC is malformed';
    if (why || !subnet) {
      complaints.once(id, () => complain(p, why ?? 'malformed'));
      continue;
    }
    complaints.clear(id);
    const key = formatCidr(subnet);
    out.set(key, { subnet, key, publicIp: p.publicIp, ...(p.vtepMac ? { vtepMac: p.vtepMac } : {}) });
  }
  return [...out.values()];
}

/**
 * Runs calls one at a time: a periodic re-diff and a watch-triggered sync must not interleave
 * their read-then-write batches.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
