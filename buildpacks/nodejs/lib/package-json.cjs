'use strict';
// Reads package.json once and prints shell assignments (single-quoted, so `eval` of the output
// is safe whatever the file holds). One node start instead of one per field.
// Usage: node package-json.cjs FILE
const fs = require('node:fs');

let pkg = {};
try {
  const text = fs.readFileSync(process.argv[2], 'utf8');
  // A package.json past a few MB is not a package.json; the platform refuses those already.
  if (text.length <= 4 * 1024 * 1024) pkg = JSON.parse(text);
} catch {
  pkg = {};
}
if (pkg === null || typeof pkg !== 'object' || Array.isArray(pkg)) pkg = {};

const q = (v) => `'${String(v).replace(/'/g, `'\\''`)}'`;
const str = (v) => (typeof v === 'string' ? v : '');
const obj = (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {});
const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const out = [];
const set = (name, value) => out.push(`${name}=${q(value)}`);

const engines = obj(pkg.engines);
set('PJ_ENGINES_NODE', str(engines.node));
set('PJ_ENGINES_NPM', str(engines.npm));
set('PJ_ENGINES_YARN', str(engines.yarn));
set('PJ_ENGINES_PNPM', str(engines.pnpm));
set('PJ_PACKAGE_MANAGER', str(pkg.packageManager).split('+')[0]);

const scripts = obj(pkg.scripts);
// HAS_ is "the key is present" (an empty heroku-postbuild still replaces build, as on Heroku).
for (const name of ['heroku-prebuild', 'build', 'heroku-postbuild', 'heroku-cleanup', 'start', 'preinstall', 'install', 'postinstall', 'prepare']) {
  const v = name.toUpperCase().replace(/-/g, '_');
  set(`PJ_HAS_${v}`, own(scripts, name) ? 'true' : 'false');
  set(`PJ_SCRIPT_${v}`, str(scripts[name]));
}

// cacheDirectories wins over cache_directories when it has entries (Heroku's rule).
const dirs = (v) => (Array.isArray(v) ? v.filter((d) => typeof d === 'string' && d.length > 0) : []);
const cacheDirs = dirs(pkg.cacheDirectories).length ? dirs(pkg.cacheDirectories) : dirs(pkg.cache_directories);
set('PJ_CACHE_DIRECTORIES', cacheDirs.slice(0, 64).join('\n'));
set('PJ_WORKSPACES', pkg.workspaces ? 'true' : 'false');

process.stdout.write(out.join('\n') + '\n');
