import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { readTenantFile } from '../sandbox/index.js';
import { BuildError } from './compile.js';

const exec = promisify(execFile);

/** A pushed tree bigger than this is not walked for .slugignore (the build's disk bounds it anyway). */
const MAX_ENTRIES = 500_000;

/**
 * Heroku's `.slugignore`: files matching its patterns are removed after the push and before any
 * buildpack runs, so neither the build nor the slug sees them. The syntax is `.gitignore`'s without
 * negation (Heroku ignores `!` lines; so do we, saying so). Returns how many paths were removed.
 *
 * The tree belongs to the tenant: it is walked with lstat (a symlink is matched as itself, never
 * followed) and the removal runs as the app's uid, so a link pointing out of the app dir removes the
 * link and nothing else.
 */
export async function applySlugignore(appDir: string, uid: number, output: (text: string) => void, timeoutMs = MATCH_TIMEOUT_MS): Promise<number> {
  const text = readTenantFile(appDir, '.slugignore', 64 * 1024);
  if (text === undefined) return 0;
  const patterns = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const negations = patterns.filter((l) => l.startsWith('!'));
  if (negations.length > 0) output(` !     .slugignore does not support negation; ignoring: ${negations.slice(0, 3).join(' ').slice(0, 200)}${negations.length > 3 ? ' ...' : ''}\n`);
  const doomed = await matchInWorker(appDir, patterns.filter((l) => !l.startsWith('!')), timeoutMs);
  // In batches, so a long list never exceeds the argument limit; `./` keeps a name like `-rf` a path.
  for (let i = 0; i < doomed.length; i += 500) {
    const batch = doomed.slice(i, i + 500).map((p) => `./${p}`);
    await exec('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'rm', '-rf', '--', ...batch], { cwd: appDir, timeout: 120_000 });
  }
  if (doomed.length > 0) output(`-----> Removed ${doomed.length} path${doomed.length === 1 ? '' : 's'} listed in .slugignore\n`);
  return doomed.length;
}

/** How long matching a tenant's patterns against a tenant's tree may take. */
const MATCH_TIMEOUT_MS = 30_000;

/**
 * The walk and the matching, in a worker thread that is terminated past `timeoutMs`: the patterns
 * become regular expressions, and a tenant can write ones that backtrack for minutes against a deep
 * tree (six `a/` and double-star segments, then `b`, took 93 s against a path 100 directories deep); on Berth's main thread that would stall the API, the router's
 * updates and every other build.
 */
function matchInWorker(appDir: string, patterns: string[], timeoutMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { from: import.meta.url, appDir, patterns, max: MAX_ENTRIES }, resourceLimits: { maxOldGenerationSizeMb: 256 } });
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new BuildError('slugignore_timeout', `Matching .slugignore against the pushed files took longer than ${Math.round(timeoutMs / 1000)} s; it was not applied. Use simpler patterns (fewer "**").`));
    }, timeoutMs);
    worker.once('message', (m: { doomed?: string[]; tooMany?: boolean; error?: string }) => {
      clearTimeout(timer);
      void worker.terminate();
      if (m.tooMany) reject(new BuildError('slugignore_too_large', `The pushed source has more than ${MAX_ENTRIES} files; .slugignore was not applied. Push fewer files (or remove them from the repository).`));
      else if (m.error !== undefined) reject(new BuildError('invalid_slugignore', `.slugignore could not be applied: ${m.error.slice(0, 200)}`));
      else resolve(m.doomed ?? []);
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(new BuildError('invalid_slugignore', `.slugignore could not be applied: ${err.message.slice(0, 200)}`));
    });
  });
}

// CommonJS, evaluated as the worker's script (no file to find under src/ or dist/). The tree is
// the tenant's: lstat, so a symlink is matched as itself and never followed.
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const { readdirSync, lstatSync } = require('node:fs');
const { join } = require('node:path');
const ignore = require('node:module').createRequire(workerData.from)('ignore');
const { appDir, patterns, max } = workerData;
try {
  const matcher = ignore().add(patterns);
  const doomed = [];
  let seen = 0;
  const walk = (rel) => {
    for (const name of readdirSync(join(appDir, rel))) {
      if (++seen > max) throw Object.assign(new Error('too many'), { tooMany: true });
      const path = rel === '' ? name : rel + '/' + name;
      const dir = lstatSync(join(appDir, path)).isDirectory();
      if (matcher.ignores(dir ? path + '/' : path)) doomed.push(path);
      else if (dir) walk(path);
    }
  };
  walk('');
  parentPort.postMessage({ doomed });
} catch (err) {
  parentPort.postMessage(err.tooMany ? { tooMany: true } : { error: String(err && err.message) });
}
`;
