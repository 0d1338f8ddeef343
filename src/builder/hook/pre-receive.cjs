// @ts-check
// Berth's pre-receive hook, installed into every app repository as hooks/berth-hook.cjs (git.ts).
// git runs it after receiving the objects and before updating any ref. It hands the push to the
// Berth process (BERTH_PUSH_SECRET names the push, BERTH_HOOK_URL is loopback) and relays the
// build output, which git shows the pusher as `remote:` lines. A non-zero exit rejects the push,
// so a failed build leaves the ref where it was. Plain CommonJS: git runs it with `node`.
'use strict';
const http = require('node:http');

// Rejected unless Berth's verdict arrives: a dropped connection must not accept a push.
process.exitCode = 1;
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
    let last = '';
    /** @param {string} text */
    const relay = (text) => {
      // git reads this slower than Berth writes when the pusher is slow: wait for it (Berth skips
      // output for a slow reader) rather than buffer here.
      if (!process.stderr.write(text)) {
        res.pause();
        process.stderr.once('drain', () => res.resume());
      }
    };
    res.setEncoding('utf8');
    res.on('data', (/** @type {string} */ d) => {
      let text = tail + d;
      let cut = text.lastIndexOf('\n') + 1;
      // Whole lines only, except past 64 KB without a newline (a line is not a place to buffer).
      if (cut === 0 && text.length > 65536) cut = text.length;
      const lines = text.slice(0, cut);
      tail = text.slice(cut);
      if (lines) last = lines.slice(lines.lastIndexOf('\n', lines.length - 2) + 1);
      // The verdict, `@@berth-result ok|fail`, is the response's last line and not output; only
      // that last line counts (a build may print anything, that line included).
      relay(lines.replace(/^@@berth-result .*\n/gm, ''));
    });
    res.on('end', () => {
      const final = (tail || last).replace(/\n$/, '');
      if (tail && !tail.startsWith('@@berth-result')) relay(tail + '\n');
      process.exitCode = final === '@@berth-result ok' ? 0 : 1;
    });
  });
  req.on('error', (e) => {
    process.stderr.write('Berth is not reachable: ' + e.message + '\n');
    process.exitCode = 1;
  });
  req.end(body);
});
