/**
 * git over SSH at `ssh://git@<host>:<port>/<app>.git`, as Heroku serves it. A user is whoever
 * registered the public key the client proves it holds; from there a push is the very push of the
 * HTTP transport (same repository, hook, push session and lock), only the pipe differs.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import ssh2, { type Connection, type PublicKeyAuthContext, type ServerChannel, type Session } from 'ssh2';
import { errorMessage, ErrorCode, isBerthError } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import type { UserRecord } from '../domain/records.js';
import type { GitRepos } from './git.js';
import type { GitAccess } from './ports.js';
import type { PushHandler, PushSession } from './push.js';

export interface GitSshOptions {
  host: string;
  port: number;
  /** The server's private host key (OpenSSH format); made on first start if missing. */
  hostKeyPath: string;
  /** Whose key is whose, and which apps they may reach: the controller's answer. */
  access: GitAccess;
  repos: GitRepos;
  pushes: PushHandler;
  log: Logger;
}

type Deps = Pick<GitSshOptions, 'access' | 'repos' | 'pushes'>;

const REFUSAL = 'Berth only serves git over SSH (git push, fetch, clone); there is no shell.\n';
// sshd's LoginGraceTime and MaxAuthTries, so a silent or guessing client cannot hold a connection.
const LOGIN_GRACE_MS = 60_000;
const MAX_AUTH_TRIES = 10;
const EXEC = /^git[ -](receive-pack|upload-pack) +(?:'([^']*)'|"([^"]*)"|(\S+))$/;
const REPO = /^\/?([a-z][a-z0-9-]{2,29})\.git$/;

export async function startGitSsh(options: GitSshOptions): Promise<{ port: number; close(): Promise<void> }> {
  const log = options.log.child({ component: 'git-ssh' });
  const connections = new Set<Connection>();
  const running = new Set<Promise<void>>();
  const server = new ssh2.Server({ hostKeys: [loadHostKey(options.hostKeyPath)] }, (conn, info) => {
    connections.add(conn);
    conn.on('close', () => connections.delete(conn));
    serve(conn, log.child({ ip: info.ip }), options, (p) => {
      const drop = (): boolean => running.delete(p);
      running.add(p);
      p.then(drop, drop);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err: Error) => log.error({ err: errorMessage(err) }, 'ssh server error'));
  const port = (server.address() as AddressInfo).port;
  log.info({ host: options.host, port }, 'git over SSH listening');
  return {
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Pushes under way get the API's drain time to finish; then everyone is cut off.
      await Promise.race([Promise.allSettled([...running]), new Promise((r) => setTimeout(r, 10_000).unref())]);
      for (const conn of connections) conn.end();
      await closed;
    },
  };
}

/** Reads the host key, or makes one: linked into place so two nodes starting together agree on one. */
function loadHostKey(path: string): Buffer {
  try {
    return checkHostKey(path, readFileSync(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, generateHostKey(), { mode: 0o600 });
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(tmp);
  }
  return checkHostKey(path, readFileSync(path));
}

/**
 * ssh2 (1.17) drops the leading zero bytes of an ed25519 public key, so about one key in 256 it
 * makes cannot be parsed back (mscdex/ssh2#1390, #1513); such a key would stop the node starting.
 * Drawing again until one parses is exact: the fault depends only on the key's first byte.
 */
export function generateHostKey(): string {
  for (let attempt = 0; attempt < 32; attempt++) {
    const key = ssh2.utils.generateKeyPairSync('ed25519').private;
    const parsed = ssh2.utils.parseKey(key);
    if (!(parsed instanceof Error) && parsed.isPrivateKey()) return key;
  }
  throw new Error('could not generate an ed25519 host key ssh2 can read');
}

function checkHostKey(path: string, key: Buffer): Buffer {
  const parsed = ssh2.utils.parseKey(key);
  if (parsed instanceof Error || !parsed.isPrivateKey()) throw new Error(`${path} is not an unencrypted SSH private key`);
  return key;
}

/**
 * The user a key belongs to. Without a signature the client only asks whether the key would do
 * (ssh2 then answers PK_OK); with one, it must verify against the key as registered, else anyone
 * who knows a user's public key would be that user.
 */
async function keyOwner(access: GitAccess, ctx: PublicKeyAuthContext): Promise<UserRecord | undefined> {
  const digest = createHash('sha256').update(ctx.key.data).digest('hex');
  const owner = await access.keyOwner(digest);
  if (!owner) return undefined;
  const registered = ssh2.utils.parseKey(owner.publicKey);
  if (registered instanceof Error || !registered.getPublicSSH().equals(ctx.key.data)) return undefined;
  if (ctx.signature && (!ctx.blob || registered.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true)) return undefined;
  return owner.user;
}

function serve(conn: Connection, log: Logger, deps: Deps, track: (p: Promise<void>) => void): void {
  let user: UserRecord | undefined;
  let failures = 0;
  const grace = setTimeout(() => conn.end(), LOGIN_GRACE_MS);
  // A client that goes away mid-handshake is routine; it must never take the process down.
  conn.on('error', (err: Error) => log.debug({ err: errorMessage(err) }, 'ssh connection error'));
  conn.on('close', () => clearTimeout(grace));
  conn.on('authentication', (ctx) => {
    const refuse = (): void => {
      if (++failures >= MAX_AUTH_TRIES) conn.end();
      else ctx.reject(['publickey']);
    };
    if (ctx.method !== 'publickey' || ctx.username !== 'git') return refuse();
    keyOwner(deps.access, ctx).then(
      (owner) => {
        if (!owner) return refuse();
        if (ctx.signature) user = owner;
        ctx.accept();
      },
      (err: unknown) => {
        log.error({ err: errorMessage(err) }, 'ssh key lookup failed');
        refuse();
      },
    );
  });
  conn.on('ready', () => {
    clearTimeout(grace);
    const who = user;
    if (!who) return conn.end();
    log.debug({ user: who.email }, 'ssh authenticated');
    // Sessions are only listened for once authenticated: ssh2 refuses channels nobody listens for
    // (port forwarding included, which would otherwise reach the loopback-only hook).
    conn.on('session', (accept) => onSession(accept(), who, deps, log, track));
  });
}

function onSession(session: Session, user: UserRecord, deps: Deps, log: Logger, track: (p: Promise<void>) => void): void {
  const env: Record<string, string> = {};
  session.on('env', (accept, reject, info) => {
    // git sends its protocol version this way (SendEnv); nothing else from a client reaches git.
    if (info.key === 'GIT_PROTOCOL' && /^[\w.:=,-]{1,100}$/.test(info.val)) {
      env.GIT_PROTOCOL = info.val;
      accept?.();
    } else reject?.();
  });
  session.on('pty', (_accept, reject) => reject?.());
  session.on('shell', (accept) => {
    const channel = accept();
    if (channel) track(finish(channel, 1, `Hi ${user.email}! You have authenticated, but ${REFUSAL}`));
  });
  session.on('subsystem', (accept) => {
    const channel = accept();
    if (channel) track(finish(channel, 1, REFUSAL));
  });
  session.on('exec', (accept, _reject, info) => {
    const channel = accept();
    if (!channel) return;
    channel.on('error', (err: Error) => log.debug({ err: errorMessage(err) }, 'ssh channel error'));
    track(
      runGit(channel, info.command, user, env, deps, log).catch((err: unknown) => {
        log.error({ err: errorMessage(err), command: info.command }, 'git over SSH failed');
        return finish(channel, 128, 'fatal: Berth could not serve this repository; try again.\n');
      }),
    );
  });
}

async function runGit(channel: ServerChannel, command: string, user: UserRecord, clientEnv: Record<string, string>, deps: Deps, log: Logger): Promise<void> {
  const m = EXEC.exec(command.trim());
  if (!m) return finish(channel, 1, REFUSAL);
  const service = m[1] === 'receive-pack' ? 'receive-pack' : 'upload-pack';
  const path = m[2] ?? m[3] ?? m[4] ?? '';
  const name = REPO.exec(path)?.[1];
  // Not found, whatever the reason, as over HTTP: nobody learns that someone else's app exists.
  const app = name
    ? await deps.access.resolveApp(user, name).catch((err: unknown) => {
        if (!isBerthError(err, ErrorCode.NotFound)) throw err;
        return undefined;
      })
    : undefined;
  if (!app) {
    const shown = path.replace(/^\//, '').replace(/[^\x20-\x7e]/g, '?').slice(0, 100);
    return finish(channel, 128, `fatal: '${shown}' does not appear to be a git repository\n`);
  }
  const appLog = log.child({ app: app.name, user: user.email, service });
  const repo = await deps.repos.ensure(app.id);
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...clientEnv };
  let session: PushSession | undefined;
  if (service === 'receive-pack') {
    session = deps.pushes.open(user, app.id, randomBytes(24).toString('hex'));
    env.BERTH_PUSH_SECRET = session.secret;
    env.BERTH_HOOK_URL = deps.pushes.hookUrl;
  }
  let code: number;
  try {
    code = await new Promise<number>((resolve) => {
      const child = spawn('git', [service, repo], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      child.on('error', (err) => {
        appLog.error({ err: errorMessage(err) }, 'could not start git');
        resolve(128);
      });
      child.on('close', (status) => resolve(status ?? 128));
      // git may stop reading before the client stops sending (upload-pack after "done").
      child.stdin.on('error', () => undefined);
      channel.pipe(child.stdin);
      child.stdout.pipe(channel, { end: false });
      child.stderr.pipe(channel.stderr, { end: false });
      // A client gone mid-push must not stall git on a full pipe: the build finishes, as over HTTP.
      channel.on('close', () => {
        child.stdout.unpipe().resume();
        child.stderr.unpipe().resume();
      });
    });
  } finally {
    // Only now has git moved the ref, so only now may the next push of this app go.
    if (session) deps.pushes.close(session);
  }
  appLog.info({ code }, `git ${service} over SSH`);
  return finish(channel, code);
}

/**
 * Sends the exit status, then closes. ssh2 sends exit-status at once, ahead of data still queued
 * for the client's window, so it waits for both output streams to flush first.
 */
async function finish(channel: ServerChannel, code: number, message?: string): Promise<void> {
  if (message) channel.stderr.write(message);
  await new Promise<void>((resolve) => {
    if ((channel.outgoing as { state?: string }).state !== 'open') return resolve();
    let left = 2;
    const done = (): void => {
      if (--left === 0) resolve();
    };
    channel.once('close', resolve);
    channel.write('', done);
    channel.stderr.write('', done);
  });
  channel.exit(code);
  channel.end();
}
