import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientUrl, EtcdMember } from '../../src/cluster/etcd-member.js';
import { EtcdMaintenance } from '../../src/cluster/maintenance.js';
import { EtcdMembers, initialCluster, removalKeepsQuorum, type Member, type MemberHealth } from '../../src/cluster/membership.js';
import { createCa, issueLeaf } from '../../src/cluster/pki.js';
import { captureLog, silentLog } from '../support/log.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';
import { etcdPids, killLeftovers } from './fixtures/procs.js';

const FIXTURE = join(import.meta.dirname, 'fixtures/member-child.ts');

let dir: string;
let tls: { ca: string; cert: string; key: string };
let tlsFiles: { caFile: string; certFile: string; keyFile: string };

interface MemberSetup {
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  logFile: string;
}

async function setup(name: string): Promise<MemberSetup> {
  return { name, dataDir: join(dir, name, 'etcd'), clientPort: await freePort(), peerPort: await freePort(), logFile: join(dir, `${name}.log`) };
}

function memberOf(s: MemberSetup, log = silentLog()): EtcdMember {
  return new EtcdMember({ ...s, advertise: '127.0.0.1', tls: tlsFiles, initialCluster: `${s.name}=${clientUrl('127.0.0.1', s.peerPort)}`, state: 'new', log });
}

function etcdClient(url: string): Etcd3 {
  return new Etcd3({
    hosts: url,
    credentials: { rootCertificate: Buffer.from(tls.ca), certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) },
    dialTimeout: 3000,
    defaultCallOptions: () => ({ deadline: Date.now() + 5000 }),
  });
}

const started: EtcdMember[] = [];
const stray = new Set<string>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-member-'));
  const ca = await createCa('berth member test CA');
  const leaf = await issueLeaf(ca, { commonName: 'root', ips: ['127.0.0.1'], usages: ['server', 'client'] });
  tls = { ca: ca.cert, cert: leaf.cert, key: leaf.key };
  tlsFiles = { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'node.crt'), keyFile: join(dir, 'node.key') };
  writeFileSync(tlsFiles.caFile, ca.cert);
  writeFileSync(tlsFiles.certFile, leaf.cert);
  writeFileSync(tlsFiles.keyFile, leaf.key, { mode: 0o600 });
});

afterAll(async () => {
  for (const m of started) await m.stop();
  // Whatever a failed test left running on our data dirs (by pid, never by name).
  killLeftovers(stray);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('EtcdMember supervision', () => {
  let s: MemberSetup;
  let member: EtcdMember;
  const { log, lines } = captureLog();

  beforeAll(async () => {
    s = await setup('m1');
    stray.add(s.dataDir);
    member = memberOf(s, log);
    started.push(member);
    await member.start(tls, 20_000);
  });

  it('serves over TLS with the node certificate', async () => {
    expect(member.initialised).toBe(true);
    const c = etcdClient(member.clientUrl);
    try {
      await c.put('/before-kill').value('kept');
      expect(await c.get('/before-kill').string()).toBe('kept');
    } finally {
      c.close();
    }
    expect(etcdPids(s.dataDir)).toHaveLength(1);
  });

  it('restarts etcd SIGKILLed from outside, on the same data', async () => {
    const [pid] = etcdPids(s.dataDir);
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    await until('etcd gone', () => !etcdPids(s.dataDir).includes(pid!), 5000);
    const again = await until('a new etcd process', () => etcdPids(s.dataDir).find((p) => p !== pid), 15_000);
    expect(again).not.toBe(pid);
    await until('the restarted member to answer', () => member.answers(tls), 15_000);
    const c = etcdClient(member.clientUrl);
    try {
      expect(await until('the key written before the kill', () => c.get('/before-kill').string(), 10_000)).toBe('kept');
    } finally {
      c.close();
    }
    expect(lines.some((l) => l.msg === 'etcd exited; restarting it' && l.signal === 'SIGKILL')).toBe(true);
  });

  it('stop() leaves no etcd process, and none comes back', async () => {
    await member.stop();
    expect(etcdPids(s.dataDir)).toEqual([]);
    expect(await member.answers(tls)).toBe(false);
    await member.stop();
    // Past the supervisor's first backoff (1 s): a stopped member is not restarted.
    await new Promise((r) => setTimeout(r, 1500));
    expect(etcdPids(s.dataDir)).toEqual([]);
  });

  it('stop() during the restart backoff cancels the restart', async () => {
    await member.start(tls, 20_000);
    const [pid] = etcdPids(s.dataDir);
    process.kill(pid!, 'SIGKILL');
    await until('the supervisor to see the exit', () => lines.filter((l) => l.msg === 'etcd exited; restarting it').length >= 2, 5000);
    await member.stop();
    await new Promise((r) => setTimeout(r, 2500));
    expect(etcdPids(s.dataDir)).toEqual([]);
  });
});

describe('EtcdMember and the process that started it', () => {
  it('dies with it (pdeathsig): a SIGKILLed Node leaves no etcd behind', async () => {
    const s = await setup('orphan');
    stray.add(s.dataDir);
    const config = { ...s, peerUrl: clientUrl('127.0.0.1', s.peerPort), tls: tlsFiles };
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      await until('the child to start its member', () => out.includes('ready\n'), { timeoutMs: 30_000, context: () => out });
      const [pid] = etcdPids(s.dataDir);
      expect(pid, 'the etcd the child started').toBeDefined();
      child.kill('SIGKILL');
      await exited;
      await until('etcd to die with its parent', () => !etcdPids(s.dataDir).includes(pid!), 10_000);
      expect(etcdPids(s.dataDir)).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});

describe('EtcdMaintenance', () => {
  let s: MemberSetup;
  let member: EtcdMember;

  beforeAll(async () => {
    s = await setup('m2');
    stray.add(s.dataDir);
    member = memberOf(s);
    started.push(member);
    await member.start(tls, 20_000);
  });

  const size = async (): Promise<MemberHealth> => {
    const members = new EtcdMembers([member.clientUrl], tls);
    try {
      const [h] = await members.health([{ id: '', name: '', peerUrls: [], clientUrls: [member.clientUrl], learner: false }]);
      return h!;
    } finally {
      members.close();
    }
  };

  it('defragments only past its thresholds', async () => {
    // Churn: ~4 MiB written, deleted and compacted away, so the file holds far more than etcd uses.
    const c = etcdClient(member.clientUrl);
    try {
      const value = 'x'.repeat(100 * 1024);
      for (let i = 0; i < 40; i++) await c.put(`/churn/${i}`).value(value);
      await c.delete().prefix('/churn/');
      const { header } = await c.kv.range({ key: Buffer.from('/') });
      await c.kv.compact({ revision: header.revision, physical: true });
      // bbolt counts the pages compaction freed as free only from the next commit on.
      await c.put('/tick').value('1');
    } finally {
      c.close();
    }
    const before = await until('the freed pages to show as slack', async () => {
      const h = await size();
      return h.dbSize! - h.dbSizeInUse! > 2 * 1024 * 1024 && h;
    });

    const log = silentLog();
    const defaults = new EtcdMaintenance({ member: { clientUrl: member.clientUrl }, tls, log });
    expect(await defaults.once()).toBe(false);
    expect((await size()).dbSize).toBe(before.dbSize);

    const eager = new EtcdMaintenance({ member: { clientUrl: member.clientUrl }, tls, log, slackBytes: 0, ratio: 1 });
    expect(await eager.once()).toBe(true);
    expect((await size()).dbSize).toBeLessThan(before.dbSize! / 2);
  });

  it('says false, not an error, when its member does not answer', async () => {
    const { log, lines } = captureLog();
    const m = new EtcdMaintenance({ member: { clientUrl: clientUrl('127.0.0.1', await freePort()) }, tls, log, slackBytes: 0, ratio: 1 });
    expect(await m.once()).toBe(false);
    await m.stop();
    expect(lines.some((l) => l.level >= 40)).toBe(false);
  });
});

const m = (id: string, learner = false): Member => ({ id, name: `n${id}`, peerUrls: [`https://10.0.0.${id}:2380`], clientUrls: [`https://10.0.0.${id}:2379`], learner });
const up = (...ids: string[]): MemberHealth[] => ids.map((id) => ({ id, reachable: true, leader: false }));

describe('removalKeepsQuorum', () => {
  const three = [m('1'), m('2'), m('3')];

  it('lets a voter go when the rest still make a quorum', () => {
    // Two voters, one dead: etcd cannot commit the removal without the dead one.
    expect(removalKeepsQuorum([m('1'), m('2')], up('1'), '2')).toBe(false);
    expect(removalKeepsQuorum(three, up('1', '2', '3'), '3')).toBe(true);
    // The one that is down is the one removed: two of two left.
    expect(removalKeepsQuorum(three, up('1', '2'), '3')).toBe(true);
  });

  it('refuses when the voters left that answer are no quorum', () => {
    // 3 down, 2 removed: one of two left answers.
    expect(removalKeepsQuorum(three, up('1', '2'), '2')).toBe(false);
    const five = [m('1'), m('2'), m('3'), m('4'), m('5')];
    expect(removalKeepsQuorum(five, up('1', '2', '3'), '1')).toBe(false);
    expect(removalKeepsQuorum(five, up('1', '2', '3'), '5')).toBe(true);
    // The last voter.
    expect(removalKeepsQuorum([m('1')], up('1'), '1')).toBe(false);
  });

  it('does not count learners as voters, and always lets a learner or an unknown id go', () => {
    const withLearner = [m('1'), m('2'), m('3', true)];
    expect(removalKeepsQuorum(withLearner, up('1', '3'), '3')).toBe(true);
    // Voters 1 and 2, 2 down: removing 1 leaves 2 (down) alone, whatever the learner says.
    expect(removalKeepsQuorum(withLearner, up('1', '3'), '1')).toBe(false);
    expect(removalKeepsQuorum(three, [], '9')).toBe(true);
    // A reachable health entry for a member that is not listed counts for nothing.
    expect(removalKeepsQuorum(three, up('1', '9'), '2')).toBe(false);
  });
});

describe('initialCluster', () => {
  it('names every started member at each peer URL, and this one by its own name and URL', () => {
    const members: Member[] = [
      { ...m('1'), peerUrls: ['https://10.0.0.1:2380', 'https://10.0.1.1:2380'] },
      m('2'),
      // The member just added for this server: etcd knows it only by peer URL until it starts.
      { id: '7', name: '', peerUrls: ['https://10.0.0.7:2380'], clientUrls: [], learner: true },
    ];
    expect(initialCluster(members, { id: '7', name: 's7', peerUrl: 'https://10.0.0.7:2380' })).toBe(
      'n1=https://10.0.0.1:2380,n1=https://10.0.1.1:2380,n2=https://10.0.0.2:2380,s7=https://10.0.0.7:2380',
    );
  });

  it('leaves out another member that never started (it has no name to give)', () => {
    const members: Member[] = [m('1'), { id: '8', name: '', peerUrls: ['https://10.0.0.8:2380'], clientUrls: [], learner: true }, { id: '7', name: '', peerUrls: ['https://10.0.0.7:2380'], clientUrls: [], learner: true }];
    expect(initialCluster(members, { id: '7', name: 's7', peerUrl: 'https://10.0.0.7:2380' })).toBe('n1=https://10.0.0.1:2380,s7=https://10.0.0.7:2380');
  });
});
