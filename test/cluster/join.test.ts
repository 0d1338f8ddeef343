import { X509Certificate, createPublicKey } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest, type Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapMachine, type MachineBootstrapOptions, type MachineCluster } from '../../src/cluster/bootstrap.js';
import { ClusterFiles } from '../../src/cluster/files.js';
import { joinCluster } from '../../src/cluster/join-client.js';
import { JoinServer } from '../../src/cluster/join-server.js';
import { EtcdMembers, type ClientTls, type Member } from '../../src/cluster/membership.js';
import { caHash, createCa, generateKeyPair, issueLeaf } from '../../src/cluster/pki.js';
import { formatToken, newSecret, parseToken } from '../../src/cluster/token.js';
import { ClusterTokens } from '../../src/controller/services/cluster.js';
import { BerthError } from '../../src/domain/errors.js';
import { openStore, type Store } from '../../src/store/index.js';
import { captureLog } from '../support/log.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';
import { killLeftovers } from './fixtures/procs.js';

/**
 * A cluster on one host's loopback: s1 made with `bootstrapMachine` (init) on 127.0.0.1, a join
 * listener for it, and joiners on 127.0.0.2 (etcd listens on the advertised address only, so two
 * members share the host). The listener sits behind a counting TLS proxy (with s1's certificate,
 * so joiners trust it like the listener itself) that records every request a joiner makes.
 */
const SECOND = '127.0.0.2';
const { log, lines } = captureLog();

let dir: string;
let s1Opts: MachineBootstrapOptions;
let s1: MachineCluster;
let store: Store;
let tokens: ClusterTokens;
let joins: JoinServer;
let proxy: HttpsServer;
let apiUrl: string;
const servers: (HttpServer | HttpsServer)[] = [];
const requests: string[] = [];
const members: MachineCluster[] = [];

async function serverOpts(name: string, advertise: string, mode: MachineBootstrapOptions['mode']): Promise<MachineBootstrapOptions> {
  return {
    dataDir: join(dir, name),
    machine: `machine-${name}`,
    name,
    advertise,
    mode,
    role: 'server',
    etcd: { clientPort: await freePort(advertise), peerPort: await freePort(advertise) },
    log: log.child({ machine: name }),
  };
}

function etcdAs(endpoints: string[], tls: { ca: string; cert?: string; key?: string }): Etcd3 {
  return new Etcd3({
    hosts: endpoints,
    credentials: { rootCertificate: Buffer.from(tls.ca), ...(tls.cert && tls.key ? { certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) } : {}) },
    dialTimeout: 3000,
    defaultCallOptions: () => ({ deadline: Date.now() + 5000 }),
  });
}

async function listMembers(endpoints: string[], tls: ClientTls): Promise<Member[]> {
  const m = new EtcdMembers(endpoints, tls);
  try {
    return await m.list();
  } finally {
    m.close();
  }
}

async function refusal(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'it succeeded').toBeInstanceOf(BerthError);
  return err as BerthError;
}

/** A raw POST to the join listener, trusting the cluster CA. */
function postJoin(body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${joins.url}/join`, { method: 'POST', ca: s1.tls.ca, headers: { 'content-type': 'application/json' }, timeout: 10_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** A stand-in for a server's API: `GET /cluster/join-info` answers `{join_url}`. Returns its URL. */
async function joinInfo(joinUrl: string): Promise<string> {
  const api = createHttpServer((req, res) => {
    if (req.method === 'GET' && req.url === '/cluster/join-info') res.setHeader('content-type', 'application/json').end(JSON.stringify({ join_url: joinUrl }));
    else res.writeHead(404).end();
  });
  const port = await freePort();
  await new Promise<void>((r) => api.listen(port, '127.0.0.1', r));
  servers.push(api);
  return `http://127.0.0.1:${port}`;
}

/**
 * A join listener that is not the cluster's: TLS with a leaf of its own CA, `/cacerts` answering
 * whatever `cacerts(ownCa)` says, and every request it gets recorded.
 */
async function impostor(cacerts: (ownCa: string) => string): Promise<{ apiUrl: string; requests: string[] }> {
  const own = await createCa('impostor');
  const leaf = await issueLeaf(own, { commonName: 'impostor', ips: ['127.0.0.1'], usages: ['server'] });
  const seen: string[] = [];
  const server = createHttpsServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    if (req.url === '/cacerts') res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(cacerts(own.cert));
    else res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'unauthorized', message: 'no' }));
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  servers.push(server);
  return { apiUrl: await joinInfo(`https://127.0.0.1:${port}`), requests: seen };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-join-'));
  s1Opts = await serverOpts('s1', '127.0.0.1', { kind: 'init' });
  s1 = await bootstrapMachine(s1Opts);
  members.push(s1);

  store = openStore('memory://');
  tokens = new ClusterTokens(store);
  await tokens.create(s1.token);
  const c1 = s1;
  joins = new JoinServer({
    host: '127.0.0.1',
    port: await freePort(),
    tls: { cert: c1.tls.cert, key: c1.tls.key },
    ca: c1.ca!,
    etcd: { endpoints: () => c1.state.endpoints, tls: c1.tls },
    verifyToken: (t) => tokens.verify(t),
    issueCredential: (machine, name, role) => tokens.issue(machine, name, role),
    servers: async () => ['http://127.0.0.1:7000'],
    sshHostKey: () => undefined,
    configKey: () => undefined,
    voters: async () => 3,
    domain: 'berth.test',
    log: log.child({ component: 'join' }),
  });
  await joins.start();

  proxy = createHttpsServer({ cert: c1.tls.cert, key: c1.tls.key }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const upstream = httpsRequest(`${joins.url}${req.url}`, { method: req.method, headers: req.headers, ca: c1.tls.ca }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    upstream.on('error', (err) => res.writeHead(502).end(String(err)));
    req.pipe(upstream);
  });
  const proxyPort = await freePort();
  await new Promise<void>((r) => proxy.listen(proxyPort, '127.0.0.1', r));

  apiUrl = await joinInfo(`https://127.0.0.1:${proxyPort}`);
});

afterAll(async () => {
  // One at a time: both at once took ~7 s here (each etcd waits on the other while it shuts down).
  for (const m of members.reverse()) await m.member?.stop();
  await joins?.close();
  for (const server of [proxy, ...servers]) {
    server?.closeAllConnections();
    server?.close();
  }
  await store?.close();
  if (dir) {
    killLeftovers(['s1', 's2', 'wrong-ca', 'wrong-secret', 'impostor', 'not-a-cert'].map((n) => new ClusterFiles(join(dir, n)).etcdDir));
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('bootstrapMachine init', () => {
  it('runs an etcd member with TLS and auth: no certificate, no entry; the node certificate reads and writes', async () => {
    expect(s1.created).toBe(true);
    expect(s1.member?.clientUrl).toBe(`https://127.0.0.1:${s1Opts.etcd.clientPort}`);
    const endpoints = [s1.member!.clientUrl];

    const noCert = etcdAs(endpoints, { ca: s1.tls.ca });
    try {
      await expect(noCert.get('/berth/x').string()).rejects.toThrow(/bad certificate|certificate required/);
    } finally {
      noCert.close();
    }
    // Auth is on: a certificate the cluster CA signed, with a CN that is no etcd user, reads nothing.
    const mallory = await issueLeaf(s1.ca!, { commonName: 'mallory', usages: ['client'] });
    const stranger = etcdAs(endpoints, { ca: s1.tls.ca, ...mallory });
    try {
      await expect(stranger.get('/berth/x').string()).rejects.toThrow(/permission denied/);
    } finally {
      stranger.close();
    }
    const node = etcdAs(endpoints, s1.tls);
    try {
      await node.put('/berth/from-s1').value('written before any join');
      expect(await node.get('/berth/from-s1').string()).toBe('written before any join');
    } finally {
      node.close();
    }
  });

  it('writes cluster.token 0600 with the hash of cluster/ca.crt, and cluster.json', () => {
    const tokenFile = join(s1Opts.dataDir, 'cluster.token');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const raw = readFileSync(tokenFile, 'utf8');
    expect(raw.trim()).toBe(s1.token);
    expect(parseToken(raw).caHash).toBe(caHash(readFileSync(join(s1Opts.dataDir, 'cluster', 'ca.crt'), 'utf8')));
    expect(statSync(join(s1Opts.dataDir, 'cluster', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(new ClusterFiles(s1Opts.dataDir).state()).toEqual({
      role: 'server',
      name: 's1',
      advertise: '127.0.0.1',
      member: { name: 's1', client_port: s1Opts.etcd.clientPort, peer_port: s1Opts.etcd.peerPort },
      endpoints: [s1.member!.clientUrl],
      servers: [],
    });
  });
});

describe('joining', () => {
  it('refuses a token naming another CA before it sends anything to /join', async () => {
    const other = await createCa('not this cluster');
    const secret = parseToken(s1.token!).secret;
    const opts = await serverOpts('wrong-ca', SECOND, { kind: 'join', url: apiUrl, token: formatToken({ caHash: caHash(other.cert), secret }) });
    const before = requests.length;
    const err = await refusal(bootstrapMachine(opts));
    expect(err.code).toBe('cluster_ca_mismatch');
    expect(err.message).not.toContain(secret);
    expect(requests.slice(before)).toEqual(['GET /cacerts']);
    expect(existsSync(join(opts.dataDir, 'cluster', 'cluster.json'))).toBe(false);
  });

  it('refuses a listener that serves the cluster CA followed by a CA of its own, before sending the secret', async () => {
    const fake = await impostor((own) => `${s1.tls.ca}\n${own}\n`);
    const secret = parseToken(s1.token!).secret;
    const opts = await serverOpts('impostor', SECOND, { kind: 'join', url: fake.apiUrl, token: s1.token! });
    const err = await refusal(bootstrapMachine(opts));
    expect(err.code).toBe('cluster_ca_mismatch');
    expect(err.message).not.toContain(secret);
    expect(fake.requests).toEqual(['GET /cacerts']);
  });

  it('refuses a listener whose /cacerts is no certificate as a CA mismatch', async () => {
    const fake = await impostor(() => '<html>hello</html>');
    const opts = await serverOpts('not-a-cert', SECOND, { kind: 'join', url: fake.apiUrl, token: s1.token! });
    const err = await refusal(bootstrapMachine(opts));
    expect(err.code).toBe('cluster_ca_mismatch');
    expect(fake.requests).toEqual(['GET /cacerts']);
  });

  it('refuses a wrong secret as unauthorized, at the server', async () => {
    const opts = await serverOpts('wrong-secret', SECOND, { kind: 'join', url: apiUrl, token: formatToken({ caHash: caHash(s1.tls.ca), secret: newSecret() }) });
    const before = requests.length;
    const err = await refusal(bootstrapMachine(opts));
    expect(err.code).toBe('unauthorized');
    expect(requests.slice(before)).toEqual(['GET /cacerts', 'POST /join']);
    expect(existsSync(join(opts.dataDir, 'cluster', 'cluster.json'))).toBe(false);
    expect(await listMembers(s1.state.endpoints, s1.tls)).toHaveLength(1);
  });

  it('answers a malformed body with 422 {id, message}', async () => {
    const good = { token: s1.token, role: 'server', machine: 'm-x', name: 'x', address: SECOND, public_key: (await generateKeyPair()).publicKey };
    const bad = [JSON.stringify({ ...good, role: 'king' }), JSON.stringify({ ...good, address: 'example.com' }), JSON.stringify({ ...good, etcd_peer_port: 70_000 }), '{"token": '];
    for (const body of bad) {
      const r = await postJoin(body);
      expect(r.status, body).toBe(422);
      expect(r.json.id).toBe('invalid_params');
      expect(typeof r.json.message).toBe('string');
      expect(Object.keys(r.json).sort()).toEqual(['id', 'message']);
    }
    expect(await listMembers(s1.state.endpoints, s1.tls)).toHaveLength(1);
  });

  it('gives an agent a client-only leaf with CN berth-agent, a credential, and no CA key or member', async () => {
    const keys = await generateKeyPair();
    const answer = await joinCluster({
      apiUrl,
      token: parseToken(s1.token!),
      request: { role: 'agent', machine: 'machine-a1', name: 'a1', address: '127.0.0.3', public_key: keys.publicKey },
      log,
    });
    expect(answer.ca_key).toBeUndefined();
    expect(answer.etcd.member).toBeNull();
    expect(answer.etcd.endpoints).toEqual([s1.member!.clientUrl]);
    expect(answer.ca_cert).toBe(s1.tls.ca);
    const cert = new X509Certificate(answer.cert);
    expect(cert.subject).toMatch(/^CN=berth-agent$/m);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.ca).toBe(false);
    expect(cert.verify(new X509Certificate(s1.tls.ca).publicKey)).toBe(true);
    expect(cert.publicKey.equals(createPublicKey(keys.publicKey))).toBe(true);
    expect(await tokens.authenticate(answer.credential)).toEqual({ id: 'machine-a1', name: 'a1', role: 'agent' });
    // etcd takes the CN as the user: the agent's keys, and nothing outside them.
    const agent = etcdAs(answer.etcd.endpoints, { ca: answer.ca_cert, cert: answer.cert, key: keys.privateKey });
    try {
      expect(await agent.get('/berth/from-s1').string()).toBe('written before any join');
      await expect(agent.put('/outside').value('x')).rejects.toThrow(/permission denied/);
    } finally {
      agent.close();
    }
  });

  it('adds a server on 127.0.0.2 as a learner, then promotes it: two voters', async () => {
    const opts = await serverOpts('s2', SECOND, { kind: 'join', url: apiUrl, token: s1.token! });
    const peerUrl = `https://${SECOND}:${opts.etcd.peerPort}`;
    // Watch the member list while the join runs: the new member must be seen as a learner.
    const seen: Member[] = [];
    let joining = true;
    const watching = (async () => {
      while (joining) {
        const list = await listMembers(s1.state.endpoints, s1.tls).catch(() => []);
        seen.push(...list.filter((m) => m.peerUrls.includes(peerUrl)));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    let s2: MachineCluster;
    try {
      s2 = await bootstrapMachine(opts);
      members.push(s2);
    } finally {
      joining = false;
      await watching;
    }
    expect(seen.some((m) => m.learner)).toBe(true);
    expect(s2.member?.clientUrl).toBe(`https://${SECOND}:${opts.etcd.clientPort}`);

    const list = await listMembers(s1.state.endpoints, s1.tls);
    expect(list.map((m) => [m.name, m.learner, m.peerUrls]).sort()).toEqual([
      ['s1', false, [`https://127.0.0.1:${s1Opts.etcd.peerPort}`]],
      ['s2', false, [peerUrl]],
    ]);
    const joined = lines.find((l) => l.msg === 'machine joined' && l.name === 's2');
    expect(joined?.etcd_member).toBe(list.find((m) => m.name === 's2')?.id);
    expect(lines.some((l) => l.msg === 'etcd member promoted to voter' && l.machine === 's2')).toBe(true);

    // A server gets the CA key (it signs later joins) and keeps the cluster's token.
    expect(s2.ca?.key).toBe(s1.ca?.key);
    expect(s2.token).toBe(s1.token);
    expect(readFileSync(join(opts.dataDir, 'cluster.token'), 'utf8').trim()).toBe(s1.token);
    expect(s2.state.endpoints.sort()).toEqual([s1.member!.clientUrl, s2.member!.clientUrl].sort());
    expect(await tokens.authenticate(s2.credential)).toEqual({ id: 'machine-s2', name: 's2', role: 'server' });
    // The new member serves the same data, with s2's own certificate (CN root).
    const viaS2 = etcdAs([s2.member!.clientUrl], s2.tls);
    try {
      expect(await viaS2.get('/berth/from-s1').string()).toBe('written before any join');
    } finally {
      viaS2.close();
    }
  });

  it('restarts s1 on its own data dir: the same member and data, the voters listed afresh', async () => {
    const before = await listMembers(s1.state.endpoints, s1.tls);
    const s1Id = before.find((m) => m.name === 's1')?.id;
    // cluster.json from init knows s1 alone; s2 joined through another process's listener.
    expect(new ClusterFiles(s1Opts.dataDir).state().endpoints).toEqual([s1.member!.clientUrl]);
    await s1.member!.stop();
    members.splice(members.indexOf(s1), 1);

    const again = await bootstrapMachine(s1Opts);
    members.push(again);
    expect(again.created).toBe(false);
    expect(again.member?.clientUrl).toBe(s1.member!.clientUrl);
    expect(again.token).toBe(s1.token);
    const s2Url = members.find((m) => m.state.name === 's2')!.member!.clientUrl;
    expect(again.state.endpoints.sort()).toEqual([s1.member!.clientUrl, s2Url].sort());
    expect(new ClusterFiles(s1Opts.dataDir).state().endpoints.sort()).toEqual([s1.member!.clientUrl, s2Url].sort());
    expect(again.endpoints().sort()).toEqual([`127.0.0.1:${s1Opts.etcd.clientPort}`, `${SECOND}:${new URL(s2Url).port}`].sort());

    const after = await until('the member list through the restarted s1', () => listMembers([again.member!.clientUrl], again.tls), 15_000);
    expect(after.find((m) => m.name === 's1')?.id).toBe(s1Id);
    const node = etcdAs([again.member!.clientUrl], again.tls);
    try {
      expect(await until('s1 to read again', () => node.get('/berth/from-s1').string(), 15_000)).toBe('written before any join');
    } finally {
      node.close();
    }
  });
});
