/**
 * What the pusher reads when a toolchain step stops the build or has something to say. The rules
 * are Heroku's (its classic Node.js buildpack); the wording is ours. Each error is a headline,
 * the why in a line or two, and a "To fix" line.
 */
import { BuildError } from '../compile.js';

export const ToolchainErrorCode = {
  MissingPackageJson: 'missing_package_json',
  InvalidPackageJson: 'invalid_package_json',
  MultipleLockfiles: 'multiple_lockfiles',
  ShrinkwrapConflict: 'shrinkwrap_conflict',
  MultiplePackageManagers: 'multiple_package_managers',
  LockfileMismatch: 'lockfile_package_manager_mismatch',
  IojsUnsupported: 'iojs_unsupported',
  DotHeroku: 'dot_heroku',
  MissingYarnrc: 'missing_yarnrc_yml',
  MissingYarnPath: 'missing_yarn_path',
  MissingYarnVendor: 'missing_yarn_vendor',
  NodeNotFound: 'node_version_not_found',
  NodeInvalid: 'invalid_node_version',
  NpmNotFound: 'npm_version_not_found',
  NpmInvalid: 'invalid_npm_version',
  YarnNotFound: 'yarn_version_not_found',
  YarnInvalid: 'invalid_yarn_version',
  PnpmNotFound: 'pnpm_version_not_found',
  PnpmInvalid: 'invalid_pnpm_version',
  DownloadFailed: 'toolchain_download_failed',
  IntegrityMismatch: 'toolchain_integrity_mismatch',
  UnpackFailed: 'toolchain_unpack_failed',
  CacheFull: 'toolchain_cache_full',
  FieldTooLong: 'package_json_field_too_long',
} as const;

/** semver's own MAX_LENGTH: no real version or range is longer, and semver's work grows with it. */
export const VERSION_FIELD_MAX = 256;
const ECHO_MAX = 80;

/**
 * A tenant's string as messages and notes quote it: at most ECHO_MAX characters. package.json may
 * hold megabytes in a field, and the notes travel to the build in an environment variable.
 */
export function clip(s: string, max = ECHO_MAX): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

export const fail = (code: string, ...lines: string[]): BuildError => new BuildError(code, lines.join('\n'));

/** A note under "Installing binaries", in the build's warning style: ` !     title`, then 7 spaces. */
export function warning(title: string, ...lines: string[]): string {
  return [` !     ${title}`, ...lines.map((l) => (l === '' ? '' : `       ${l}`))].join('\n');
}

export type Tool = 'node' | 'npm' | 'yarn' | 'pnpm';
export const TOOL_NAME: Record<Tool, string> = { node: 'Node.js', npm: 'npm', yarn: 'Yarn', pnpm: 'pnpm' };
const FIELD: Record<Tool, string> = { node: 'engines.node', npm: 'engines.npm', yarn: 'engines.yarn', pnpm: 'engines.pnpm' };
const EXAMPLE: Record<Tool, string> = { node: '24.x', npm: '11.x', yarn: '1.22.x', pnpm: '10.x' };

/** Where the version came from, for messages: `engines.node` or `packageManager`. */
export type Source = 'engines' | 'packageManager';

export function notFound(tool: Tool, rawRequest: string, source: Source, looked: string[], nearest: string[]): BuildError {
  const request = clip(rawRequest);
  const code = { node: ToolchainErrorCode.NodeNotFound, npm: ToolchainErrorCode.NpmNotFound, yarn: ToolchainErrorCode.YarnNotFound, pnpm: ToolchainErrorCode.PnpmNotFound }[tool];
  const field = source === 'packageManager' ? 'packageManager' : FIELD[tool];
  const example = tool === 'node' || nearest.length === 0 ? EXAMPLE[tool] : nearest[nearest.length - 1]!;
  return fail(
    code,
    `${TOOL_NAME[tool]} ${request} could not be found.`,
    `No published version matches "${request}" (${field} in package.json). Berth looked in ${looked.join(' and ')}.`,
    nearest.length > 0 ? `Nearest available versions: ${nearest.join(', ')}` : `That registry has no ${TOOL_NAME[tool]} release at all.`,
    source === 'packageManager'
      ? `To fix: set "packageManager" to "${tool}@<one of those versions>" in package.json, then commit and push again.`
      : `To fix: set "${field}" in package.json to one of those, or to a release line such as "${example}", then commit and push again.`,
  );
}

export function invalidRange(tool: Tool, rawRequest: string, source: Source): BuildError {
  const request = clip(rawRequest);
  const code = { node: ToolchainErrorCode.NodeInvalid, npm: ToolchainErrorCode.NpmInvalid, yarn: ToolchainErrorCode.YarnInvalid, pnpm: ToolchainErrorCode.PnpmInvalid }[tool];
  const field = source === 'packageManager' ? 'packageManager' : FIELD[tool];
  return fail(
    code,
    `Invalid ${TOOL_NAME[tool]} version requirement: "${request}" (${field} in package.json).`,
    `It is not a semver version or range, so Berth cannot tell which ${TOOL_NAME[tool]} to install.`,
    source === 'packageManager'
      ? `To fix: write it as "${tool}@<exact version>", e.g. "${tool}@${EXAMPLE[tool].replace('x', '0')}", then commit and push again.`
      : `To fix: request a release line, e.g. "engines": { "${tool}": "${EXAMPLE[tool]}" }, then commit and push again (a line keeps you on its security fixes).`,
  );
}

const LOCKFILE: Record<'npm' | 'yarn' | 'pnpm', string> = { npm: 'package-lock.json', yarn: 'yarn.lock', pnpm: 'pnpm-lock.yaml' };

export function multipleLockfiles(managers: Array<'npm' | 'yarn' | 'pnpm'>): BuildError {
  const files = managers.map((m) => LOCKFILE[m]);
  return fail(
    ToolchainErrorCode.MultipleLockfiles,
    `Multiple lockfiles found: ${files.join(', ')}.`,
    'Each package manager writes its own lockfile, and only one can decide what gets installed; with several,',
    'the app could be built with versions nobody tested. Keep the lockfile of the package manager you use.',
    ...managers.map((keep) => `To fix, if you use ${TOOL_NAME[keep]}: git rm ${managers.filter((m) => m !== keep).map((m) => LOCKFILE[m]).join(' ')} && git commit -m "Remove unused lockfiles", then push again.`),
  );
}

export function shrinkwrapConflict(managers: Array<'npm' | 'yarn' | 'pnpm'>): BuildError {
  return fail(
    ToolchainErrorCode.ShrinkwrapConflict,
    `npm-shrinkwrap.json is committed together with ${managers.map((m) => LOCKFILE[m]).join(', ')}.`,
    'Only one lockfile can decide what gets installed.',
    'To fix: keep exactly one of npm-shrinkwrap.json, package-lock.json, yarn.lock and pnpm-lock.yaml (git rm the others), commit and push again.',
  );
}

export function multiplePackageManagers(fields: string[]): BuildError {
  return fail(
    ToolchainErrorCode.MultiplePackageManagers,
    'package.json declares more than one package manager:',
    ...fields.map((f) => `- ${f}`),
    'Installing with a package manager the project does not use can leave packages out or pick other versions.',
    'To fix: keep only the field of the package manager you use, remove the others, commit and push again.',
  );
}

export function lockfileMismatch(lockManager: 'npm' | 'yarn' | 'pnpm', lockfile: string, declared: string): BuildError {
  const declaredName = declared.split('@')[0] as 'npm' | 'yarn' | 'pnpm';
  return fail(
    ToolchainErrorCode.LockfileMismatch,
    `${lockfile} is ${lockManager === 'npm' ? 'an' : 'a'} ${TOOL_NAME[lockManager]} lockfile, but package.json says "packageManager": "${clip(declared)}".`,
    'Berth installs with the package manager the lockfile belongs to, so one of the two is out of date.',
    `To fix, if you use ${TOOL_NAME[declaredName]}: git rm ${lockfile}, run ${declaredName} install, commit its ${LOCKFILE[declaredName]} and push again.`,
    `To fix, if you use ${TOOL_NAME[lockManager]}: change "packageManager" to "${lockManager}@<version>" (or remove it) in package.json, commit and push again.`,
  );
}

export function iojsUnsupported(request: string): BuildError {
  return fail(
    ToolchainErrorCode.IojsUnsupported,
    `io.js is not supported (package.json asks for engines.iojs "${clip(request)}").`,
    'io.js merged back into Node.js in 2015 and has had no security fixes since.',
    'To fix: remove "iojs" from "engines" in package.json (and set "node" instead, e.g. "24.x"), commit and push again.',
  );
}

export function dotHeroku(path: string): BuildError {
  return fail(
    ToolchainErrorCode.DotHeroku,
    `A file named ${path} is committed, where the build installs Node.js.`,
    'The Node.js buildpack keeps its binaries (node, npm, yarn, pnpm) in the .heroku directory of the app.',
    `To fix: git rm ${path} (or list it in .slugignore), commit and push again.`,
  );
}

export function invalidPackageJson(detail: string): BuildError {
  return fail(
    ToolchainErrorCode.InvalidPackageJson,
    'Unable to parse package.json.',
    `It is not valid JSON (${clip(detail, 200)}).`,
    'To fix: correct the syntax (trailing or missing commas, unquoted keys...; `node -e "require(\'./package.json\')"` shows where), commit and push again.',
  );
}

export function fieldTooLong(field: string, length: number): BuildError {
  return fail(
    ToolchainErrorCode.FieldTooLong,
    `"${field}" in package.json is ${length} characters long; Berth accepts at most ${VERSION_FIELD_MAX}.`,
    'No real version or version range is that long (semver itself stops at 256), so Berth does not try to resolve it.',
    `To fix: set "${field}" to a release line or an exact version, e.g. ${field === 'packageManager' ? '"npm@11.6.2"' : `"${EXAMPLE[(field.split('.')[1] ?? 'node') as Tool] ?? '24.x'}"`}, then commit and push again.`,
  );
}

export function missingYarnrc(): BuildError {
  return fail(
    ToolchainErrorCode.MissingYarnrc,
    'yarn.lock is a Yarn 2+ (Berry) lockfile, but no Yarn 2+ version is declared and .yarnrc.yml is missing.',
    'Without "packageManager": "yarn@<version>", engines.yarn >= 2 or a vendored release named by yarnPath in .yarnrc.yml, there is no Yarn to install it with.',
    'To fix: set "packageManager": "yarn@4.x.y" in package.json (or run `yarn set version berry` and commit .yarnrc.yml and .yarn/releases), then push again.',
  );
}

export function missingYarnPath(): BuildError {
  return fail(
    ToolchainErrorCode.MissingYarnPath,
    'yarn.lock is a Yarn 2+ (Berry) lockfile, but .yarnrc.yml has no yarnPath and no Yarn 2+ version is declared.',
    'Berth needs either a vendored Yarn release (yarnPath) or a declared Yarn version to install it with.',
    'To fix: set "packageManager": "yarn@4.x.y" in package.json (or run `yarn set version berry` and commit .yarnrc.yml and .yarn/releases), then push again.',
  );
}

export function missingYarnVendor(rawYarnPath: string): BuildError {
  const yarnPath = clip(rawYarnPath);
  return fail(
    ToolchainErrorCode.MissingYarnVendor,
    `.yarnrc.yml names a vendored Yarn at ${yarnPath}, but that file is not in the pushed source.`,
    'Yarn runs the release yarnPath points at, so the build cannot run Yarn without it.',
    `To fix: commit ${yarnPath} (check .gitignore does not exclude .yarn/releases), or remove yarnPath from .yarnrc.yml and set "packageManager": "yarn@<version>", then push again.`,
  );
}
