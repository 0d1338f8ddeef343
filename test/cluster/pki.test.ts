import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkServerIdentity, connect, createServer, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBerthError } from '../../src/domain/errors.js';
import { caHash, createCa, generateKeyPair, issueLeaf, signedBy, signLeaf, type CertKeyPair } from '../../src/cluster/pki.js';

const run = promisify(execFile);

let ca: CertKeyPair;
let otherCa: CertKeyPair;
let dir: string;

beforeAll(async () => {
  ca = await createCa('berth test CA');
  otherCa = await createCa('berth test CA');
  dir = mkdtempSync(join(tmpdir(), 'berth-pki-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function openssl(leaf: string, caCert: string, purpose: 'sslserver' | 'sslclient'): Promise<{ ok: boolean; out: string }> {
  writeFileSync(join(dir, 'ca.pem'), caCert);
  writeFileSync(join(dir, 'leaf.pem'), leaf);
  try {
    const { stdout, stderr } = await run('openssl', ['verify', '-purpose', purpose, '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]);
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/**
 * A real TLS handshake on loopback, the client pinning `trust` as its only CA and checking the
 * server's identity against `host`; with `clientCert`, the server requires and verifies it.
 */
async function handshake(o: { server: CertKeyPair; trust: string; host: string; clientCert?: CertKeyPair; clientCa?: string }): Promise<string> {
  const server = createServer({
    cert: o.server.cert,
    key: o.server.key,
    ...(o.clientCa ? { ca: o.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
  });
  const peers: string[] = [];
  server.on('secureConnection', (s: TLSSocket) => {
    peers.push(String(s.getPeerCertificate().subject?.CN ?? ''));
    s.end('hello');
  });
  // Under TLS 1.3 the client finishes its side before the server has checked the client's
  // certificate, so a refusal shows on the server; report it with the result.
  server.on('tlsClientError', (err: Error) => peers.push(`refused: ${err.message}`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    return await new Promise<string>((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1',
        port,
        ca: o.trust,
        ...(o.clientCert ? { cert: o.clientCert.cert, key: o.clientCert.key } : {}),
        // Connecting to 127.0.0.1 but checking the name a caller would dial, as etcd clients do.
        checkServerIdentity: (_h, cert) => checkServerIdentity(o.host, cert),
      });
      let body = '';
      socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')));
      socket.on('data', (d: Buffer) => (body += d.toString()));
      socket.on('end', () => setImmediate(() => resolve(`${body}:${peers.join(',')}`)));
      socket.on('error', reject);
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}

describe('createCa', () => {
  it('makes a self-signed CA for about ten years that may sign certificates', async () => {
    const cert = new X509Certificate(ca.cert);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=berth test CA');
    expect(cert.checkIssued(cert)).toBe(true);
    const years = (Date.parse(cert.validTo) - Date.now()) / (365 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    writeFileSync(join(dir, 'ca-text.pem'), ca.cert);
    const text = (await run('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'ca-text.pem')])).stdout;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toContain('Subject Key Identifier');
  });

  it('gives each CA a fresh key and serial', () => {
    expect(new X509Certificate(ca.cert).serialNumber).not.toBe(new X509Certificate(otherCa.cert).serialNumber);
    expect(caHash(ca.cert)).not.toBe(caHash(otherCa.cert));
  });
});

describe('leaves', () => {
  it('a server leaf with an IP SAN passes a real TLS handshake that pins the CA, and openssl verify', async () => {
    const server = await issueLeaf(ca, { commonName: 'etcd-1', ips: ['127.0.0.1'], dnsNames: ['localhost'], usages: ['server'] });
    expect(await handshake({ server, trust: ca.cert, host: '127.0.0.1' })).toBe('hello:');
    expect(await openssl(server.cert, ca.cert, 'sslserver')).toMatchObject({ ok: true });
    // Not for another address, not under another CA.
    await expect(handshake({ server, trust: ca.cert, host: '127.0.0.2' })).rejects.toThrow(/IP: 127.0.0.2 is not in the cert's list/);
    await expect(handshake({ server, trust: otherCa.cert, host: '127.0.0.1' })).rejects.toThrow(/unable to verify|self.signed|certificate/i);
    expect((await openssl(server.cert, otherCa.cert, 'sslserver')).ok).toBe(false);
  });

  it('a client leaf carries clientAuth and its CN reaches a server that requires client certificates', async () => {
    const server = await issueLeaf(ca, { commonName: 'etcd-1', ips: ['127.0.0.1'], usages: ['server'] });
    const client = await issueLeaf(ca, { commonName: 'root', organization: 'berth', usages: ['client'] });
    expect(new X509Certificate(client.cert).subject).toBe('CN=root\nO=berth');
    expect(await openssl(client.cert, ca.cert, 'sslclient')).toMatchObject({ ok: true });
    // Usage is enforced: a client certificate is no server certificate, and the reverse.
    expect((await openssl(client.cert, ca.cert, 'sslserver')).ok).toBe(false);
    expect((await openssl(server.cert, ca.cert, 'sslclient')).ok).toBe(false);
    expect(await handshake({ server, trust: ca.cert, host: '127.0.0.1', clientCert: client, clientCa: ca.cert })).toBe('hello:root');
    const stranger = await issueLeaf(otherCa, { commonName: 'root', usages: ['client'] });
    const refused = await handshake({ server, trust: ca.cert, host: '127.0.0.1', clientCert: stranger, clientCa: ca.cert }).catch((e: Error) => e.message);
    expect(refused).not.toContain('hello');
    expect(refused).toMatch(/refused|alert/);
    const anonymous = await handshake({ server, trust: ca.cert, host: '127.0.0.1', clientCa: ca.cert }).catch((e: Error) => e.message);
    expect(anonymous).toMatch(/certificate required/);
  });

  it('signs a public key that a joiner generated, keeping its private key out of the exchange', async () => {
    const keys = await generateKeyPair();
    expect(keys.publicKey).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(keys.privateKey).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const cert = await signLeaf(ca, keys.publicKey, { commonName: 'server-2', ips: ['fd00::2', '::ffff:10.0.0.2'], usages: ['server', 'client'], days: 30 });
    const x = new X509Certificate(cert);
    expect(x.subjectAltName).toBe('IP Address:FD00:0:0:0:0:0:0:2, IP Address:10.0.0.2');
    expect(x.checkPrivateKey(createPrivateKey(keys.privateKey))).toBe(true);
    const days = (Date.parse(x.validTo) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);
    expect(await handshake({ server: { cert, key: keys.privateKey }, trust: ca.cert, host: '10.0.0.2' })).toBe('hello:');
  });

  it('refuses bad input with a coded error', async () => {
    const keys = await generateKeyPair();
    const bad = async (p: Promise<unknown>, msg: RegExp): Promise<void> => {
      const err = await p.then(() => undefined, (e: unknown) => e);
      expect(isBerthError(err, 'invalid_params'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(msg);
    };
    await bad(signLeaf(ca, keys.publicKey, { commonName: 'x', ips: ['10.0.0.300'], usages: ['server'] }), /not a valid IPv4 or IPv6/);
    await bad(signLeaf(ca, keys.publicKey, { commonName: 'x', dnsNames: ['bad_name.example'], usages: ['server'] }), /not a valid host name/);
    await bad(signLeaf(ca, keys.publicKey, { commonName: '', usages: ['server'] }), /common name/);
    await bad(signLeaf(ca, keys.publicKey, { commonName: 'x\n', usages: ['server'] }), /common name/);
    await bad(signLeaf(ca, keys.publicKey, { commonName: 'x', usages: [] }), /at least one usage/);
    await bad(signLeaf(ca, keys.publicKey, { commonName: 'x', usages: ['client'], days: 0 }), /lifetime/);
    await bad(signLeaf(ca, 'not a key', { commonName: 'x', usages: ['client'] }), /not a PEM public key/);
    await bad(signLeaf({ cert: ca.cert, key: otherCa.key }, keys.publicKey, { commonName: 'x', usages: ['client'] }), /does not belong/);
    const leaf = await issueLeaf(ca, { commonName: 'x', usages: ['client'] });
    await bad(signLeaf(leaf, keys.publicKey, { commonName: 'y', usages: ['client'] }), /not a CA/);
  });
});

describe('caHash and signedBy', () => {
  it('caHash is the SHA-256 of the DER, stable across calls and PEM formatting', async () => {
    const hash = caHash(ca.cert);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(caHash(ca.cert)).toBe(hash);
    expect(caHash(`\n${ca.cert.replace(/\n/g, '\r\n')}`)).toBe(hash);
    writeFileSync(join(dir, 'hash.pem'), ca.cert);
    const { stdout } = await run('sh', ['-c', `openssl x509 -in '${join(dir, 'hash.pem')}' -outform DER | sha256sum`]);
    expect(stdout.split(' ')[0]).toBe(hash);
  });

  it('signedBy holds for this CA only', async () => {
    const leaf = await issueLeaf(ca, { commonName: 'a', usages: ['client'] });
    expect(signedBy(leaf.cert, ca.cert)).toBe(true);
    expect(signedBy(leaf.cert, otherCa.cert)).toBe(false);
    expect(signedBy(ca.cert, ca.cert)).toBe(true);
    expect(signedBy('garbage', ca.cert)).toBe(false);
    // A leaf is not a CA: something it "signed" does not count.
    expect(signedBy(leaf.cert, leaf.cert)).toBe(false);
  });
});
