import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applySlugignore } from '../../src/builder/slugignore.js';

let dir: string;
const UID = 65534;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-slugignore-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An app dir owned by the build uid, as the builder hands it over. */
function app(name: string, files: Record<string, string>): string {
  const root = join(dir, name);
  for (const [path, body] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), body);
  }
  execFileSync('chown', ['-R', `${UID}:${UID}`, root]);
  return root;
}

describe('.slugignore', () => {
  it('removes what its patterns match before the build, as .gitignore patterns without negation', async () => {
    const root = app('a', {
      '.slugignore': '# design files\n*.psd\n/docs\nspec/\n!keep.psd\n\nlogs/*.log\n',
      'server.js': 'x',
      'art/logo.psd': 'x',
      'keep.psd': 'x',
      'docs/index.md': 'x',
      'lib/docs/inner.md': 'x',
      'spec/a.test.js': 'x',
      'lib/spec/b.test.js': 'x',
      'logs/a.log': 'x',
      'logs/a.txt': 'x',
    });
    let out = '';
    expect(await applySlugignore(root, UID, (t) => (out += t))).toBe(6);
    expect(out).toContain('does not support negation; ignoring: !keep.psd');
    expect(out).toContain('Removed 6 paths listed in .slugignore');
    for (const gone of ['art/logo.psd', 'keep.psd', 'docs', 'spec', 'lib/spec', 'logs/a.log']) expect(existsSync(join(root, gone)), gone).toBe(false);
    // `/docs` is anchored to the root; `spec/` matches directories at any depth.
    for (const kept of ['server.js', 'lib/docs/inner.md', 'logs/a.txt', 'art', '.slugignore']) expect(existsSync(join(root, kept)), kept).toBe(true);
  });

  it('removes a matching symlink itself, never what it points to', async () => {
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'precious.psd'), 'keep me');
    const root = app('b', { '.slugignore': '*.psd\nlinked\n' });
    symlinkSync(join(outside, 'precious.psd'), join(root, 'x.psd'));
    symlinkSync(outside, join(root, 'linked'));
    expect(await applySlugignore(root, UID, () => {})).toBe(2);
    expect(existsSync(join(outside, 'precious.psd'))).toBe(true);
    expect(existsSync(join(root, 'x.psd'))).toBe(false);
  });

  it('stops patterns that backtrack for minutes, off the main thread, which keeps serving', async () => {
    const deep = `${Array.from({ length: 100 }, () => 'a').join('/')}/c`;
    const root = app('d', { '.slugignore': 'a/**/a/**/a/**/a/**/a/**/a/**/b\n', [deep]: 'x' });
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 50);
    const started = Date.now();
    try {
      await expect(applySlugignore(root, UID, () => {}, 1500)).rejects.toThrow(/took longer than 2 s; it was not applied/);
    } finally {
      clearInterval(ticker);
    }
    expect(Date.now() - started).toBeLessThan(5000);
    // The event loop ran throughout (about 30 ticks in 1.5 s), not frozen behind a regex.
    expect(ticks).toBeGreaterThan(15);
    expect(existsSync(join(root, deep))).toBe(true);
  });

  it('does nothing without a .slugignore, and refuses one that is a symlink', async () => {
    const root = app('c', { 'a.psd': 'x' });
    expect(await applySlugignore(root, UID, () => {})).toBe(0);
    symlinkSync('/etc/hostname', join(root, '.slugignore'));
    await expect(applySlugignore(root, UID, () => {})).rejects.toThrow(/symbolic link/);
    expect(existsSync(join(root, 'a.psd'))).toBe(true);
  });
});
