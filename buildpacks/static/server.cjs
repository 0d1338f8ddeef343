// Berth's static site server: files under the root from static.json (default: the app), index.html
// for directories, ETag and Cache-Control (HTML revalidates, other assets cache for an hour).
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { URL } = require('node:url');

const app = path.resolve(__dirname, '..');
let config = {};
try {
  config = JSON.parse(fs.readFileSync(path.join(app, 'static.json'), 'utf8'));
} catch {
  // No static.json: serve the app directory itself.
}
const root = path.resolve(app, config.root || '.');
const types = { '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png', '.jpg': 'image/jpeg', '.ico': 'image/x-icon', '.txt': 'text/plain; charset=utf-8', '.woff2': 'font/woff2' };

http
  .createServer((req, res) => {
    let file = path.join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!file.startsWith(root) || file.includes(`${path.sep}.berth`)) return send(res, 404, 'Not found');
    fs.stat(file, (err, st) => {
      if (!err && st.isDirectory()) {
        file = path.join(file, 'index.html');
        st = fs.existsSync(file) ? fs.statSync(file) : undefined;
      }
      if (err || !st) return send(res, 404, 'Not found');
      const etag = `"${st.size.toString(16)}-${st.mtimeMs.toString(16)}"`;
      const ext = path.extname(file);
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', ext === '.html' ? 'no-cache' : 'public, max-age=3600');
      res.setHeader('Content-Type', types[ext] || 'application/octet-stream');
      if (req.headers['if-none-match'] === etag) return send(res, 304);
      res.writeHead(200, { 'Content-Length': st.size });
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).pipe(res);
    });
  })
  .listen(Number(process.env.PORT) || 5000);

function send(res, status, body) {
  res.writeHead(status, body ? { 'Content-Type': 'text/plain; charset=utf-8' } : {});
  res.end(body);
}
