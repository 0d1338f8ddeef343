'use strict';
// Reads package.json once and prints shell assignments (single-quoted, so `eval` of the output
// is safe whatever the file holds). One node start instead of one per field.
// Usage: node package-json.cjs FILE
const fs = require('node:fs');

const q = (v) => `'${String(v).replace(/'/g, `'\\''`)}'`;

// A package.json that cannot be read is an error the pusher must see, never an empty one: as
// `{}` no script would run and the app would get no web process, with nothing said. The
// reason goes out as PJ_ERROR for bin/compile to fail with.
function load(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return { error: `package.json could not be read (${err.code ?? err.message}).` };
  }
  // A package.json past a few MB is not a package.json; the platform refuses those already.
  if (text.length > 4 * 1024 * 1024) return { error: 'package.json is larger than 4 MB.' };
  // Editors on Windows save UTF-8 with a byte order mark; npm and Heroku read such files.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let pkg;
  try {
    pkg = JSON.parse(text);
  } catch (err) {
    return { error: `package.json is not valid JSON: ${String(err.message).replace(/\s+/g, ' ').slice(0, 200)}` };
  }
  if (pkg === null || typeof pkg !== 'object' || Array.isArray(pkg)) return { error: 'package.json is not a JSON object.' };
  return { pkg };
}

const loaded = load(process.argv[2]);
if (loaded.error) {
  process.stdout.write(`PJ_ERROR=${q(loaded.error)}\n`);
  process.exit(0);
}
const pkg = loaded.pkg;

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
