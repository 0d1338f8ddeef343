import { X509Certificate } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { BerthError, errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import type { JoinAnswer, JoinRequest } from './join-server.js';
import { caHash, signedBy } from './pki.js';
import { formatToken, type ClusterToken } from './token.js';

interface HttpsOptions {
  /** Trust only this CA; without it the peer is not verified (used for `/cacerts` alone). */
  ca?: string;
  body?: unknown;
  timeoutMs?: number;
}

function https(url: string, o: HttpsOptions): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const body = o.body === undefined ? undefined : JSON.stringify(o.body);
    const req = httpsRequest(
      url,
      {
        method: body ? 'POST' : 'GET',
        ...(o.ca ? { ca: o.ca } : { rejectUnauthorized: false }),
        headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
        timeout: o.timeoutMs ?? 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          // A join answer is a few KiB; anything far larger is not a Berth server.
          if (size > 1024 * 1024) req.destroy(new Error('answer too large'));
          else chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * The CA certificate a join listener served, as PEM, when it served exactly one: the joiner trusts
 * what it returns, and Node trusts every certificate in a PEM string while the hash covers only the
 * first, so a listener serving the cluster's CA followed by its own must not pass.
 */
function servedCa(text: string): string | undefined {
  if (text.match(/-----BEGIN /g)?.length !== 1) return undefined;
  try {
    return new X509Certificate(text).toString();
  } catch {
    return undefined;
  }
}

/** Where a server's join listener is, from its API (public, no secret: the TLS check is what counts). */
async function joinUrl(apiUrl: string): Promise<string> {
  const base = apiUrl.replace(/\/+$/, '');
  let res: Response;
  try {
    res = await fetch(`${base}/cluster/join-info`, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new BerthError('cluster_unreachable', `Cannot reach the server at ${base}: ${errorMessage(err)}`);
  }
  const body = (await res.json().catch(() => ({}))) as { join_url?: unknown };
  if (!res.ok || typeof body.join_url !== 'string' || !/^https:\/\/[^/\s]+$/.test(body.join_url)) {
    throw new BerthError('cluster_unreachable', `${base} is not a Berth server that takes joins (GET /cluster/join-info answered ${res.status}). Give the API URL \`berth up --cluster-init\` printed.`);
  }
  return body.join_url;
}

/**
 * Joins a cluster, k3s's way: find the server's TLS join listener, fetch its CA and compare the
 * CA's hash with the one in the token — only then, on a connection verified against that CA, send
 * the token's secret with this machine's public key. A server whose CA does not match never sees
 * the secret.
 */
export async function joinCluster(o: { apiUrl: string; token: ClusterToken; request: Omit<JoinRequest, 'token'>; log: Logger }): Promise<JoinAnswer> {
  const url = await joinUrl(o.apiUrl);
  const ca = await https(`${url}/cacerts`, {}).catch((err: unknown) => {
    throw new BerthError('cluster_unreachable', `Cannot reach the join listener at ${url}: ${errorMessage(err)}`);
  });
  const served = ca.status === 200 ? servedCa(ca.text) : undefined;
  if (!served || caHash(served) !== o.token.caHash) {
    throw new BerthError('cluster_ca_mismatch', `The server at ${url} does not hold the CA this token names; the token was not sent. Check the URL, or take the token from that cluster's <data-dir>/cluster.token.`);
  }
  for (let attempt = 1; ; attempt++) {
    const res = await https(`${url}/join`, { ca: served, body: { ...o.request, token: formatToken(o.token) } }).catch((err: unknown) => {
      throw new BerthError('cluster_unreachable', `The join at ${url} failed: ${errorMessage(err)}`);
    });
    let body: Partial<JoinAnswer> & { id?: string; message?: string } = {};
    try {
      body = JSON.parse(res.text) as typeof body;
    } catch {
      // Reported below with the status.
    }
    // Another server joining etcd: etcd takes one learner at a time.
    if (res.status === 503 && body.id === 'etcd_busy' && attempt < 30) {
      o.log.info({ attempt }, 'another server is joining; waiting');
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (res.status !== 200) throw new BerthError(res.status === 401 ? 'unauthorized' : 'cluster_join_refused', `The server at ${url} refused the join: ${body.message ?? `HTTP ${res.status}`}`);
    if (typeof body.cert !== 'string' || typeof body.credential !== 'string' || typeof body.ca_cert !== 'string' || !body.etcd || !Array.isArray(body.etcd.endpoints)) {
      throw new BerthError('cluster_join_refused', `The server at ${url} answered the join with something that is not a join answer.`);
    }
    if (body.ca_cert !== ca.text || !signedBy(body.cert, served)) throw new BerthError('cluster_join_refused', `The server at ${url} answered with a certificate its CA did not sign.`);
    return body as JoinAnswer;
  }
}
