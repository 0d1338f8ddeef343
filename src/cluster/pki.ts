// @peculiar/x509 resolves its algorithm classes through tsyringe, which needs the Reflect metadata API;
// this import must come before the library's.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { invalid } from '../domain/errors.js';

/**
 * The cluster's certificate authority: one self-signed CA per cluster, leaves for etcd members
 * (server + peer), Berth components (client; etcd takes the CN as the user) and the join endpoint.
 * Keys are EC P-256 throughout, made and used through Node's WebCrypto.
 */

/** A certificate and its private key, PEM (the key PKCS#8). */
export interface CertKeyPair {
  cert: string;
  key: string;
}

/** PEM: SPKI public key, PKCS#8 private key. */
export interface KeyPair {
  publicKey: string;
  privateKey: string;
}

export interface LeafOptions {
  /** etcd takes the CN as the user name. */
  commonName: string;
  organization?: string;
  dnsNames?: string[];
  /** IPv4/IPv6 SANs. */
  ips?: string[];
  /** extKeyUsage serverAuth / clientAuth. */
  usages: ('server' | 'client')[];
  /** Default 3650. */
  days?: number;
}

const crypto = webcrypto;
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const CA_DAYS = 3650;
/** Leaves are backdated a little so a peer whose clock runs slightly behind still accepts them. */
const BACKDATE_MS = 5 * 60_000;

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

/** A positive 16-byte serial (RFC 5280 allows up to 20 octets; a leading 0 bit keeps it positive). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f | 0x01;
  return bytes.toString('hex');
}

function checkText(what: string, value: string): void {
  // Printable, no control characters; etcd compares the CN byte for byte with a user name.
  if (value.length === 0 || value.length > 64 || !/^[\x20-\x7e]+$/.test(value) || value.trim() !== value) {
    throw invalid(`${what} "${value}" must be 1-64 printable ASCII characters without surrounding spaces`);
  }
}

function checkDnsName(name: string): void {
  const labels = name.split('.');
  const ok =
    name.length <= 253 &&
    labels.every((l, i) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l) || (i === 0 && l === '*' && labels.length > 2));
  if (!ok) throw invalid(`DNS name "${name}" is not a valid host name`);
}

/** The address in the form the SAN encoder takes: dotted IPv4, or IPv6 written out in full. */
function sanIp(ip: string): string {
  if (!ipaddr.isValid(ip)) throw invalid(`IP address "${ip}" is not a valid IPv4 or IPv6 address`);
  const addr = ipaddr.parse(ip);
  if (addr.kind() === 'ipv6') {
    const v6 = addr as ipaddr.IPv6;
    // Sockets report IPv4 peers as ::ffff:a.b.c.d; the certificate should carry the IPv4 address.
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : v6.toNormalizedString();
  }
  return addr.toString();
}

function checkDays(days: number): void {
  if (!Number.isInteger(days) || days < 1 || days > 36_500) throw invalid(`certificate lifetime ${days} days must be an integer from 1 to 36500`);
}

function subject(commonName: string, organization?: string): x509.JsonName {
  checkText('common name', commonName);
  const name: x509.JsonName = [{ CN: [commonName] }];
  if (organization !== undefined) {
    checkText('organization', organization);
    name.push({ O: [organization] });
  }
  return name;
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  let der: Buffer;
  try {
    // node:crypto reads any PEM private key form (PKCS#8, SEC1); WebCrypto takes PKCS#8 only.
    der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  } catch (err) {
    throw invalid(`the CA private key is not a PEM private key: ${(err as Error).message}`);
  }
  try {
    return await crypto.subtle.importKey('pkcs8', der, EC, false, ['sign']);
  } catch {
    throw invalid('the CA private key is not an EC P-256 key');
  }
}

async function importPublicKey(pem: string): Promise<CryptoKey> {
  let der: Buffer;
  try {
    der = createPublicKey(pem).export({ type: 'spki', format: 'der' });
  } catch (err) {
    throw invalid(`the public key is not a PEM public key: ${(err as Error).message}`);
  }
  try {
    return await crypto.subtle.importKey('spki', der, EC, true, ['verify']);
  } catch {
    throw invalid('the public key is not an EC P-256 key');
  }
}

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw invalid(`${what} is not a PEM certificate: ${(err as Error).message}`);
  }
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function exportKeys(keys: CryptoKeyPair): Promise<KeyPair> {
  return {
    publicKey: toPem(await crypto.subtle.exportKey('spki', keys.publicKey), 'PUBLIC KEY'),
    privateKey: toPem(await crypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
  };
}

/** A self-signed CA for ten years: signs certificates and CRLs, nothing else. */
export async function createCa(commonName: string): Promise<CertKeyPair> {
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name: subject(commonName),
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + CA_DAYS * DAY_MS),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { cert: cert.toString('pem'), key: (await exportKeys(keys)).privateKey };
}

export async function generateKeyPair(): Promise<KeyPair> {
  return exportKeys(await newKeys());
}

/** Signs a leaf for a public key someone else generated (a joiner keeps its private key). */
export async function signLeaf(ca: CertKeyPair, publicKeyPem: string, o: LeafOptions): Promise<string> {
  const name = subject(o.commonName, o.organization);
  const days = o.days ?? 3650;
  checkDays(days);
  if (o.usages.length === 0) throw invalid('a certificate needs at least one usage (server, client)');
  for (const d of o.dnsNames ?? []) checkDnsName(d);
  const sans: x509.JsonGeneralName[] = [
    ...(o.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value: value.toLowerCase() })),
    ...(o.ips ?? []).map((ip) => ({ type: 'ip' as const, value: sanIp(ip) })),
  ];
  const caCert = parseCert(ca.cert, 'the CA certificate');
  if (!caCert.ca) throw invalid('the CA certificate is not a CA (basicConstraints CA:false)');
  const caParsed = new x509.X509Certificate(caCert.raw);
  // The leaf's authority key id is the CA's own subject key id, so chain builders can match them.
  const caKeyId = caParsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const signingKey = await importPrivateKey(ca.key);
  const publicKey = await importPublicKey(publicKeyPem);
  // The CA's key must match its certificate, or every leaf would fail verification later, far from here.
  if (!caCert.checkPrivateKey(createPrivateKey(ca.key))) throw invalid('the CA private key does not belong to the CA certificate');
  const usages = [...new Set(o.usages)].map((u) => (u === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth));
  const now = Date.now();
  // A leaf must not outlive its CA: verifiers reject the chain once the CA has expired anyway.
  const notAfter = Math.min(now + days * DAY_MS, Date.parse(caCert.validTo));
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(usages, false),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto),
    caKeyId
      ? new x509.AuthorityKeyIdentifierExtension(caKeyId, false)
      : await x509.AuthorityKeyIdentifierExtension.create(caParsed.publicKey, false, crypto),
  ];
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, false));
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: name,
      issuer: caParsed.subjectName,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      publicKey,
      signingKey,
      signingAlgorithm: SIGNING,
      extensions,
    },
    crypto,
  );
  return cert.toString('pem');
}

/** A fresh key pair and its leaf. */
export async function issueLeaf(ca: CertKeyPair, o: LeafOptions): Promise<CertKeyPair> {
  const keys = await generateKeyPair();
  return { cert: await signLeaf(ca, keys.publicKey, o), key: keys.privateKey };
}

/** SHA-256 (hex) of the CA certificate's DER: what the join token pins. */
export function caHash(caCertPem: string): string {
  return createHash('sha256').update(parseCert(caCertPem, 'the CA certificate').raw).digest('hex');
}

/** Whether `certPem` was signed by `caCertPem` and is in its validity period. */
export function signedBy(certPem: string, caCertPem: string): boolean {
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    ca = new X509Certificate(caCertPem);
  } catch {
    return false;
  }
  const now = Date.now();
  const inPeriod = (c: X509Certificate): boolean => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
  return ca.ca && inPeriod(ca) && inPeriod(cert) && cert.checkIssued(ca) && cert.verify(ca.publicKey);
}
