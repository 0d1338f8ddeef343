// @ts-check
// Berth's pre-receive hook, installed into every app repository as hooks/berth-hook.cjs (git.ts).
// git runs it after receiving the objects and before updating any ref. It hands the push to the
// Berth process (BERTH_PUSH_SECRET names the push, BERTH_HOOK_URL is loopback) and relays the
// build output, which git shows the pusher as `remote:` lines. A non-zero exit rejects the push,
// so a failed build leaves the ref where it was. Plain CommonJS: git runs it with `node`.
'use strict';
const http = require('node:http');

let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const updates = input
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [old, next, ref] = l.split(' ');
      return { old, new: next, ref };
    });
  const body = JSON.stringify({
    secret: process.env.BERTH_PUSH_SECRET,
    updates,
    // The pushed objects are still in git's quarantine: Berth reads the commit from there.
    objects: {
      GIT_OBJECT_DIRECTORY: process.env.GIT_OBJECT_DIRECTORY || '',
      GIT_ALTERNATE_OBJECT_DIRECTORIES: process.env.GIT_ALTERNATE_OBJECT_DIRECTORIES || '',
      GIT_QUARANTINE_PATH: process.env.GIT_QUARANTINE_PATH || '',
    },
  });
  const req = http.request(process.env.BERTH_HOOK_URL || '', { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
    let tail = '';
    res.on('data', (d) => {
      const text = tail + d.toString();
      const cut = text.lastIndexOf('\n') + 1;
      // Whole lines only; the last line, `@@berth-result ok|fail`, is the verdict, not output.
      process.stderr.write(text.slice(0, cut).replace(/^@@berth-result .*\n/m, ''));
      tail = text.slice(cut);
      if (/^@@berth-result /m.test(text.slice(0, cut))) process.exitCode = /^@@berth-result ok$/m.test(text.slice(0, cut)) ? 0 : 1;
    });
    res.on('end', () => {
      if (tail && !tail.startsWith('@@berth-result')) process.stderr.write(tail + '\n');
      if (process.exitCode === undefined) process.exitCode = 1;
    });
  });
  req.on('error', (e) => {
    process.stderr.write('Berth is not reachable: ' + e.message + '\n');
    process.exitCode = 1;
  });
  req.end(body);
});
