import { execFile } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ignore from 'ignore';
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
export async function applySlugignore(appDir: string, uid: number, output: (text: string) => void): Promise<number> {
  const text = readTenantFile(appDir, '.slugignore', 64 * 1024);
  if (text === undefined) return 0;
  const patterns = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const negations = patterns.filter((l) => l.startsWith('!'));
  if (negations.length > 0) output(` !     .slugignore does not support negation; ignoring: ${negations.slice(0, 3).join(' ')}${negations.length > 3 ? ' ...' : ''}\n`);
  const matcher = ignore().add(patterns.filter((l) => !l.startsWith('!')));
  const doomed: string[] = [];
  let seen = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(appDir, rel))) {
      if (++seen > MAX_ENTRIES) throw new BuildError('slugignore_too_large', `The pushed source has more than ${MAX_ENTRIES} files; .slugignore was not applied. Push fewer files (or remove them from the repository).`);
      const path = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(appDir, path));
      const dir = st.isDirectory();
      if (matcher.ignores(dir ? `${path}/` : path)) doomed.push(path);
      else if (dir) await walk(path);
    }
  };
  await walk('');
  // In batches, so a long list never exceeds the argument limit; `./` keeps a name like `-rf` a path.
  for (let i = 0; i < doomed.length; i += 500) {
    const batch = doomed.slice(i, i + 500).map((p) => `./${p}`);
    await exec('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'rm', '-rf', '--', ...batch], { cwd: appDir, timeout: 120_000 });
  }
  if (doomed.length > 0) output(`-----> Removed ${doomed.length} path${doomed.length === 1 ? '' : 's'} listed in .slugignore\n`);
  return doomed.length;
}
