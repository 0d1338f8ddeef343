import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import type { CertRecord } from '../domain/certs.js';

const BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Whether nginx could load a certificate record's files: every certificate in the chain parses and
 * the key matches the first. nginx refuses its whole config over one file it cannot load, so a
 * record written around the API's checks would hold back every other vhost change; instead it is
 * left out like any other value nginx.conf cannot hold. Answers are kept by content, so a render
 * parses only certificates it has not seen (a few hundred microseconds each).
 */
export class PemCheck {
  private known = new Map<string, boolean>();

  usable(c: CertRecord): boolean {
    const id = createHash('sha256').update(c.certificate_chain).update('\0').update(c.private_key).digest('hex');
    let ok = this.known.get(id);
    if (ok === undefined) {
      ok = loadable(c);
      // Bounded: renewals leave old answers behind; starting over costs one parse per certificate.
      if (this.known.size >= 10_000) this.known.clear();
      this.known.set(id, ok);
    }
    return ok;
  }
}

function loadable(c: CertRecord): boolean {
  try {
    // Every block parsed, as nginx reads the whole chain; the key must be the leaf's.
    const [leaf] = (c.certificate_chain.match(BLOCK) ?? []).map((pem) => new X509Certificate(pem));
    return leaf !== undefined && leaf.checkPrivateKey(createPrivateKey(c.private_key));
  } catch {
    return false;
  }
}
