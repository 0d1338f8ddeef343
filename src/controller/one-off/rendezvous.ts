import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { createServer, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { BerthError, errorMessage } from '../../domain/errors.js';
import type { Logger } from '../../domain/log.js';
import type { Attachment, Sink } from './runner.js';

const exec = promisify(execFile);

export interface RendezvousOptions {
  /** Where the certificate and its key are kept (`<data-dir>/rendezvous`). */
  dir: string;
  host: string;
  port: number;
  /** Host names and addresses clients reach this node by: the certificate must name them. */
  names: string[];
  log: Logger;
  attach(secret: string, sink: Sink): Attachment;
}

export interface Rendezvous {
  port: number;
  /** The certificate (PEM) clients must trust: `NODE_EXTRA_CA_CERTS=<it> heroku run …`. */
  certPath: string;
  close(): Promise<void>;
}

// A secret line is 64 hex digits; anything much longer is not a client of ours.
const MAX_SECRET_LINE = 256;
const SECRET_TIMEOUT_MS = 10_000;
// A client that reads slower than its dyno writes is cut off (its dyno stopped), not buffered for.
const MAX_BUFFERED = 8 * 1024 * 1024;

/**
 * Heroku's rendezvous protocol, which `heroku run` speaks to the dyno's `attach_url`
 * (rendezvous://host:port/secret): TLS, the client writes the secret and CRLF, the server
 * answers one line (the CLI discards its first read) and then relays the dyno's output until it
 * exits and closes. The CLI verifies the certificate with no way to turn that off, so Berth keeps
 * a self-signed one and users point Node at it with NODE_EXTRA_CA_CERTS.
 */
export async function startRendezvous(o: RendezvousOptions): Promise<Rendezvous> {
  const { certPath, keyPath } = await ensureCertificate(o.dir, o.names).catch((err: unknown) => {
    throw new BerthError('rendezvous_certificate', `Could not make the rendezvous certificate with openssl: ${errorMessage(err)}`, { cause: err });
  });
  const server = createServer({ key: readFileSync(keyPath), cert: readFileSync(certPath) }, (socket) => serve(socket, o));
  server.on('tlsClientError', (err) => o.log.debug({ err: errorMessage(err) }, 'rendezvous handshake failed'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const sockets = new Set<TLSSocket>();
  server.on('secureConnection', (s: TLSSocket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return {
    port: (server.address() as { port: number }).port,
    certPath,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function serve(socket: TLSSocket, o: RendezvousOptions): void {
  socket.setEncoding('utf8');
  socket.setNoDelay(true);
  socket.setTimeout(SECRET_TIMEOUT_MS, () => socket.destroy());
  socket.on('error', () => undefined);
  let line = '';
  const onData = (chunk: string): void => {
    line += chunk;
    const end = line.indexOf('\n');
    if (end < 0) {
      if (line.length > MAX_SECRET_LINE) socket.destroy();
      return;
    }
    socket.off('data', onData);
    socket.setTimeout(0);
    const secret = line.slice(0, end).trim();
    // The CLI reads its first line as "the dyno is up" and only then sends stdin: so it is sent
    // once the dyno runs (or, before an error, so that the CLI shows the error and not drops it).
    let greeted = false;
    const greet = (): void => {
      if (!greeted && socket.writable) socket.write('rendezvous\r\n');
      greeted = true;
    };
    const sink: Sink = {
      started: greet,
      // As the dyno wrote it: from a pty with its CRLFs; from pipes with LF, which the CLI's raw
      // mode (libuv's) still turns into CRLF on the terminal. `heroku run -x` looks for its
      // exit-status line (it starts with U+FFFF) within one read, so that line starts a write of
      // its own, hence a TLS record of its own, never split across two.
      output: (_stream, chunk) => {
        for (const piece of chunk.split(/(?=\uFFFF)/)) if (socket.writable) socket.write(piece);
        if (socket.writableLength > MAX_BUFFERED) socket.destroy();
      },
      exited: () => socket.end(),
      failed: (message) => {
        greet();
        setTimeout(() => socket.end(`${message}\n`), 50);
      },
    };
    let attached: Attachment;
    try {
      attached = o.attach(secret, sink);
    } catch (err) {
      // The CLI throws away the first thing it reads: say something it will show after that.
      socket.write('rendezvous\r\n', () => setTimeout(() => socket.end(`Error: ${errorMessage(err)}\n`), 50));
      socket.on('data', () => undefined);
      return;
    }
    // Anything after the secret line is the client's stdin.
    const input = (text: string): void => {
      if (!text) return;
      // Without a tty the CLI marks the end of its piped stdin with ^D, as a terminal would.
      const eot = !attached.tty ? text.indexOf('\u0004') : -1;
      if (eot >= 0) {
        if (eot > 0) attached.write(text.slice(0, eot));
        attached.end();
        socket.off('data', input);
        socket.on('data', () => undefined);
        return;
      }
      if (!attached.write(text)) {
        socket.pause();
        void attached.drained().then(() => socket.resume());
      }
    };
    input(line.slice(end + 1));
    socket.on('data', input);
    // A client that hangs up (Ctrl-C, closed terminal) must not leave its dyno running.
    socket.on('close', () => attached.detach());
    socket.on('end', () => attached.detach());
  };
  socket.on('data', onData);
}

/** A self-signed certificate for these names, made once with openssl and kept in the data dir. */
async function ensureCertificate(dir: string, names: string[]): Promise<{ certPath: string; keyPath: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const namesPath = join(dir, 'names');
  // "leaf:" marks certificates made as a leaf; older ones (made as a CA) are replaced.
  const wanted = `leaf:${[...new Set(names)].sort().join(',')}`;
  if (existsSync(certPath) && existsSync(keyPath) && existsSync(namesPath) && readFileSync(namesPath, 'utf8') === wanted) return { certPath, keyPath };
  const san = [...new Set(names)].sort().map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  await exec('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '3650', '-subj', '/CN=Berth rendezvous',
    '-addext', `subjectAltName=${san}`,
    // Not a CA: users trust it (NODE_EXTRA_CA_CERTS), and a trusted CA's key could sign a
    // certificate for any host those CLIs talk to. Node accepts a self-signed leaf as an anchor.
    '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'keyUsage=critical,digitalSignature',
    '-addext', 'extendedKeyUsage=serverAuth',
  ]);
  chmodSync(keyPath, 0o600);
  writeFileSync(namesPath, wanted, { mode: 0o600 });
  return { certPath, keyPath };
}
