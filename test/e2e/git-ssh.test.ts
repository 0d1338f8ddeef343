import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2, { type IdentityCallback, type ParsedKey, type SignCallback } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Users } from '../../src/controller/services/users.js';
import { createLogger } from '../../src/domain/log.js';
import { startNode, type Node, type PlatformNodeOptions, type PlatformSummary } from '../../src/node/index.js';
import { apiClient } from '../support/api.js';
import { testNetwork } from '../support/network.js';
import { freePort } from '../support/ports.js';
import { CGROUP_ROOT } from '../support/sandbox.js';

interface Run {
  code: number;
  out: string;
}

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd, GIT_TERMINAL_PROMPT: '0', ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

let dir: string;
let node: Node<PlatformSummary>;
let apiUrl: string;
const users: Record<string, { token: string; key: string }> = {};

/** ssh as git runs it, with nothing from this machine's ssh config or agent. */
function sshCommand(key: string): string {
  return `ssh -F /dev/null -i ${key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR`;
}

function gitSsh(cwd: string, key: string, ...args: string[]): Promise<Run> {
  return run('git', args, cwd, { GIT_SSH_COMMAND: sshCommand(key) });
}

const sshPort = (): number => node.summary.ssh_port as number;
const remote = (app: string): string => `ssh://git@127.0.0.1:${sshPort()}/${app}.git`;

const api = apiClient(() => apiUrl);

async function keygen(name: string): Promise<string> {
  const path = join(dir, 'keys', name);
  const r = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path], dir);
  if (r.code !== 0) throw new Error(r.out);
  return path;
}

/** A user with a fresh ed25519 key registered through the API. */
async function user(name: string): Promise<void> {
  const { token } = await new Users(node.store).create(`${name}@example.com`);
  const key = await keygen(name);
  const added = await api<{ fingerprint: string }>('POST', '/account/keys', { public_key: readFileSync(`${key}.pub`, 'utf8') }, { token });
  expect(added.status).toBe(201);
  users[name] = { token, key };
}

async function checkout(name: string, files: Record<string, string>): Promise<string> {
  const path = join(dir, name);
  mkdirSync(path);
  for (const [file, body] of Object.entries(files)) writeFileSync(join(path, file), body);
  for (const args of [['init', '-q', '-b', 'main'], ['config', 'user.email', 'dev@example.com'], ['config', 'user.name', 'Dev'], ['add', '.'], ['commit', '-qm', 'initial']]) {
    const r = await run('git', args, path);
    if (r.code !== 0) throw new Error(r.out);
  }
  return path;
}

const owner = (): { token: string; key: string } => users.owner as { token: string; key: string };

// The same network each time the node starts on its data dir: the store keeps the range.
const network = testNetwork();

/** A node with the roles git over SSH needs, as `berth up` builds them: the controller and the builder (and so the network). */
async function nodeOptions(): Promise<PlatformNodeOptions> {
  const dataDir = join(dir, 'data');
  return {
    dataDir,
    log: createLogger('test', { level: 'silent' }),
    store: `sqlite://${join(dataDir, 'state.db')}`,
    sandbox: { cgroupRoot: CGROUP_ROOT },
    network,
    roles: { controller: { host: '127.0.0.1', port: await freePort(), domain: 'berth.test' }, builder: { sshPort: await freePort(), maxParallel: 2 } },
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-ssh-'));
  // Builds run as unprivileged uids and must traverse the data dir.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'keys'), { mode: 0o700 });
  node = await startNode(await nodeOptions());
  apiUrl = node.summary.api_url;
  await user('owner');
  await user('stranger');
  expect((await api('POST', '/apps', { name: 'ssh-push' }, { token: owner().token })).status).toBe(201);
}, 60_000);

afterAll(async () => {
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('git over SSH', () => {
  it('made its host key on first start, readable by the owner only, and keeps it', async () => {
    const path = join(dir, 'data', 'ssh', 'host_ed25519');
    const key = readFileSync(path, 'utf8');
    expect(key).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // The node again on the same data dir (and store): same key, the users and app still there.
    await node.stop();
    node = await startNode(await nodeOptions());
    apiUrl = node.summary.api_url;
    expect(readFileSync(path, 'utf8')).toBe(key);
  });

  it('pushes a Procfile app with a registered key and releases it', async () => {
    const path = await checkout('app', { Procfile: 'web: sleep 1\n' });
    const push = await gitSsh(path, owner().key, 'push', remote('ssh-push'), 'main');
    expect(push.code, push.out).toBe(0);
    expect(push.out).toMatch(/remote: -----> Procfile app detected/);
    expect(push.out).toMatch(/remote: {8}Released v2/);
    const releases = await api<{ version: number; description: string }[]>('GET', '/apps/ssh-push/releases', undefined, { token: owner().token });
    expect(releases.body.map((r) => r.version)).toEqual([1, 2]);
    expect(releases.body[1]?.description).toMatch(/^Deploy [0-9a-f]{7}/);
  });

  it('releases the push lock when git is done: the next push builds too', async () => {
    const path = join(dir, 'app');
    writeFileSync(join(path, 'Procfile'), 'web: sleep 2\n');
    expect((await run('git', ['commit', '-qam', 'second'], path)).code).toBe(0);
    const push = await gitSsh(path, owner().key, 'push', remote('ssh-push'), 'main');
    expect(push.code, push.out).toBe(0);
    expect(push.out).toMatch(/remote: {8}Released v3/);
  });

  it('clones over SSH, speaking protocol v2 (GIT_PROTOCOL reaches git)', async () => {
    const clone = await gitSsh(dir, owner().key, 'clone', '-q', remote('ssh-push'), 'cloned');
    expect(clone.code, clone.out).toBe(0);
    expect(readFileSync(join(dir, 'cloned', 'Procfile'), 'utf8')).toBe('web: sleep 2\n');
    const v2 = await run('git', ['-c', 'protocol.version=2', 'ls-remote', remote('ssh-push')], dir, { GIT_SSH_COMMAND: sshCommand(owner().key), GIT_TRACE_PACKET: '1' });
    expect(v2.code, v2.out).toBe(0);
    expect(v2.out).toMatch(/packet: +ls-remote< version 2/);
  });

  it('refuses a key nobody registered', async () => {
    const key = await keygen('unknown');
    const push = await gitSsh(join(dir, 'app'), key, 'push', remote('ssh-push'), 'main');
    expect(push.code).not.toBe(0);
    expect(push.out).toMatch(/Permission denied \(publickey\)/);
  });

  it('refuses a registered public key signed for by another private key', async () => {
    // What someone who knows the owner's public key (it is public) could try: offer it, sign with their own key.
    const key = (data: string | Buffer): ParsedKey => {
      const k = ssh2.utils.parseKey(data);
      if (k instanceof Error) throw k;
      return k;
    };
    const registered = key(readFileSync(`${owner().key}.pub`));
    const forger = key(readFileSync(await keygen('forger')));
    class ForgingAgent extends ssh2.BaseAgent<ParsedKey> {
      getIdentities(cb: IdentityCallback<ParsedKey>): void {
        cb(undefined, [registered]);
      }
      sign(_key: ParsedKey, data: Buffer, _opts: unknown, cb?: SignCallback): void {
        cb?.(undefined, forger.sign(data));
      }
    }
    const outcome = await new Promise<string>((resolve) => {
      const client = new ssh2.Client();
      client.on('ready', () => {
        client.end();
        resolve('authenticated');
      });
      client.on('error', (err) => resolve(err.message));
      client.connect({ host: '127.0.0.1', port: sshPort(), username: 'git', agent: new ForgingAgent(), readyTimeout: 10_000 });
    });
    expect(outcome).toMatch(/All configured authentication methods failed/);
  });

  it('answers not found to a registered user who is not a collaborator', async () => {
    const push = await gitSsh(join(dir, 'app'), (users.stranger as { key: string }).key, 'push', remote('ssh-push'), 'main');
    expect(push.code).not.toBe(0);
    expect(push.out).toMatch(/fatal: 'ssh-push\.git' does not appear to be a git repository/);
    const missing = await gitSsh(dir, owner().key, 'clone', '-q', remote('no-such-app'), 'missing');
    expect(missing.out).toMatch(/fatal: 'no-such-app\.git' does not appear to be a git repository/);
  });

  it('refuses other branches in the hook, as over HTTP', async () => {
    const push = await gitSsh(join(dir, 'app'), owner().key, 'push', remote('ssh-push'), 'main:feature');
    expect(push.code).not.toBe(0);
    expect(push.out).toMatch(/Berth builds main or master only/);
    expect(push.out).toMatch(/pre-receive hook declined/);
  });

  it('serves no shell and no other command', async () => {
    const base = ['-F', '/dev/null', '-i', owner().key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-p', String(sshPort())];
    const shell = await run('ssh', [...base, '-T', 'git@127.0.0.1'], dir);
    expect(shell.code).toBe(1);
    expect(shell.out).toMatch(/Hi owner@example\.com! You have authenticated, but Berth only serves git over SSH/);
    const other = await run('ssh', [...base, 'git@127.0.0.1', 'cat /etc/passwd'], dir);
    expect(other.code).toBe(1);
    expect(other.out).toMatch(/Berth only serves git over SSH/);
    const user = await run('ssh', [...base, 'root@127.0.0.1', 'git-upload-pack', "'ssh-push.git'"], dir);
    expect(user.code).not.toBe(0);
    expect(user.out).toMatch(/Permission denied \(publickey\)/);
  });
});
