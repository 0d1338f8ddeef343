import { randomBytes } from 'node:crypto';
import { invalid } from '../domain/errors.js';

/**
 * The cluster token, k3s's shape: `B10<sha256 of the cluster CA>::<secret>`. The hash lets a
 * joiner check that the server it reached holds the cluster's CA before it sends the secret; the
 * secret is what the store keeps the SHA-256 of. A bare secret (a cluster without a CA: the
 * one-machine default) is accepted where no CA is to be verified.
 */
export interface ClusterToken {
  caHash: string;
  secret: string;
}

const PREFIX = 'B10';
const SECRET = /^[A-Za-z0-9_-]{16,200}$/;

export function newSecret(): string {
  return `berth_${randomBytes(24).toString('hex')}`;
}

export function formatToken(t: ClusterToken): string {
  return `${PREFIX}${t.caHash}::${t.secret}`;
}

/** The secret part of a token: `B10<CA hash>::<secret>`, or a bare secret (a cluster without a CA). */
export function tokenSecret(token: string): string {
  const i = token.indexOf('::');
  return i >= 0 ? token.slice(i + 2) : token;
}

/** Parses a full token; anything else is `invalid_params`, never echoing the token back. */
export function parseToken(raw: string): ClusterToken {
  const token = raw.trim();
  const m = /^B10([0-9a-f]{64})::(.+)$/.exec(token);
  if (!m) throw invalid('The cluster token is not a Berth cluster token (B10<CA hash>::<secret>); take it from <data-dir>/cluster.token on a server started with --cluster-init.');
  const secret = m[2] as string;
  if (!SECRET.test(secret)) throw invalid('The cluster token\'s secret part is malformed.');
  return { caHash: m[1] as string, secret };
}
