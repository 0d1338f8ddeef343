import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { createSecureContext, rootCertificates } from 'node:tls';
import { errorMessage, invalid } from '../../domain/errors.js';
import type { SslCertInfo } from '../../domain/certs.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const DNS_NAME = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

let roots: X509Certificate[] | undefined;
/** Node's bundled Mozilla roots, parsed once: what "ca_signed?" is judged against. */
function trustedRoots(): X509Certificate[] {
  return (roots ??= rootCertificates.map((pem) => new X509Certificate(pem)));
}

/** Walks leaf → issuers in the given chain until a trusted root signs one. */
function caSigned(chain: X509Certificate[]): boolean {
  let current = chain[0];
  const seen = new Set<X509Certificate>();
  while (current && !seen.has(current)) {
    seen.add(current);
    const cert = current;
    // A key type node cannot verify with throws: that is "not signed by it", not a 500.
    const signs = (issuer: X509Certificate): boolean => {
      try {
        return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
      } catch {
        return false;
      }
    };
    if (trustedRoots().some(signs)) return true;
    current = chain.find((c) => !seen.has(c) && signs(c));
  }
  return false;
}

/** "C=US\nO=Acme\nCN=x" → "/C=US/O=Acme/CN=x", the way Heroku shows subjects and issuers. */
const slashed = (dn: string): string => `/${dn.split('\n').filter(Boolean).join('/')}`;

function names(leaf: X509Certificate): string[] {
  // Node writes SANs as "DNS:a, DNS:b, IP Address:…"; a DNS name cannot hold ", " itself.
  const sans = (leaf.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  const cn = /^CN=(.+)$/m.exec(leaf.subject)?.[1]?.toLowerCase();
  const all = sans.length ? sans : cn ? [cn] : [];
  return [...new Set(all.filter((n) => DNS_NAME.test(n)))];
}

export interface CheckedCertificate {
  /** The certificates alone, PEM, leaf first, one trailing newline. */
  chain: string;
  /** The key as unencrypted PKCS#8 PEM, whatever PEM form it came in. */
  key: string;
  info: SslCertInfo;
}

/**
 * Parses and checks a certificate chain and its private key the way the router will use them:
 * PEM, leaf first, the key matching the leaf, not expired, naming at least one DNS host, and
 * loadable by OpenSSL (which nginx uses too). Failures are `invalid_params` with what to fix.
 */
export function checkCertificate(chainPem: string, keyPem: string, now = new Date()): CheckedCertificate {
  const blocks = chainPem.match(PEM_CERT);
  if (!blocks) throw invalid('certificate_chain holds no PEM certificate (-----BEGIN CERTIFICATE-----).');
  let chain: X509Certificate[];
  try {
    chain = blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw invalid(`certificate_chain holds a certificate that cannot be read: ${errorMessage(err)}.`);
  }
  const leaf = chain[0] as X509Certificate;
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    const encrypted = /ENCRYPTED/.test(keyPem);
    throw invalid(encrypted ? 'private_key is encrypted; remove its passphrase first (openssl pkey -in KEY -out KEY.plain).' : `private_key is not a PEM private key: ${errorMessage(err)}.`);
  }
  if (!leaf.checkPrivateKey(key)) throw invalid(`private_key does not match the certificate for ${leaf.subject.replace(/\n/g, ', ')}; the certificate for the key must come first in certificate_chain.`);
  const expires = new Date(leaf.validTo);
  if (expires.getTime() <= now.getTime()) throw invalid(`The certificate expired on ${expires.toISOString()}.`);
  const certDomains = names(leaf);
  if (certDomains.length === 0) throw invalid('The certificate names no DNS hostname (no DNS subjectAltName and no CN).');
  const pemChain = `${blocks.join('\n')}\n`;
  const pemKey = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    createSecureContext({ cert: pemChain, key: pemKey });
  } catch (err) {
    throw invalid(`OpenSSL cannot use this certificate and key: ${errorMessage(err)}.`);
  }
  return {
    chain: pemChain,
    key: pemKey,
    info: {
      cert_domains: certDomains,
      starts_at: new Date(leaf.validFrom).toISOString(),
      expires_at: expires.toISOString(),
      issuer: slashed(leaf.issuer),
      subject: slashed(leaf.subject),
      'ca_signed?': caSigned(chain),
      'self_signed?': leaf.checkIssued(leaf) && leaf.verify(leaf.publicKey),
    },
  };
}
