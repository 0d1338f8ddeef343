import { Etcd3, EtcdRoleExistsError, EtcdUserExistsError, isRecoverableError } from 'etcd3';
import { BerthError, errorMessage } from '../domain/errors.js';
import { REVISION_PROBE_KEY, type EtcdTls } from '../store/index.js';
import { byteRange } from '../store/validate.js';

/**
 * etcd users, named for the CNs of the client certificates Berth issues: with --client-cert-auth
 * etcd takes the CN as the user, so a certificate is the whole credential. `root` is the servers'
 * (member changes and defragmentation need it). etcd 3.4 does not check compaction against roles:
 * any user may compact, so an agent's certificate can discard history, though read no key outside its
 * prefixes.
 */
export const ETCD_USERS = { server: 'root', agent: 'berth-agent' } as const;

/** What an agent machine reads: Berth's keys (its router follows them all, to know which revision it has applied). */
const AGENT_READ = '/berth/';
/**
 * What it writes: its machine record, its dynos' status and endpoints, its router's report, its
 * subnet and dyno addresses. Not releases, apps, users or tokens: an agent's certificate cannot
 * change a release, mint an API token or place units. (Its writes are not limited to its own
 * records within these prefixes: etcd's ranges cannot say "this machine's units".)
 */
export const AGENT_WRITE = ['/berth/machines/', '/berth/status/', '/berth/services/', '/berth/routers/', '/berth/network/'] as const;
const CALL_TIMEOUT_MS = 5000;

export const EtcdAuthErrorCode = 'etcd_auth_failed';

async function ignoring<T>(kind: new (...args: never[]) => Error, fn: () => Promise<T>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof kind)) throw err;
  }
}

/**
 * Turns authentication on for an etcd cluster whose client connects with the `root` client
 * certificate: creates `root` (role root) and `berth-agent` (role berth-agent: read on /berth/
 * and the store's revision probe key, write on `AGENT_WRITE`), then enables auth. Idempotent: after the first
 * run the root certificate still has every right, so running it again changes nothing.
 *
 * The users have no password (etcd 3.4's no_password option): a certificate is the only way in, so
 * there is no password to leak or to guess.
 */
export async function enableEtcdAuth(o: { endpoints: string[]; tls: EtcdTls }): Promise<void> {
  if (o.endpoints.length === 0) throw new BerthError(EtcdAuthErrorCode, 'enable etcd auth: no endpoints given');
  const client = new Etcd3({
    hosts: o.endpoints.map((e) => (e.startsWith('https://') ? e : `https://${e}`)),
    credentials: { rootCertificate: Buffer.from(o.tls.ca), certChain: Buffer.from(o.tls.cert), privateKey: Buffer.from(o.tls.key) },
    dialTimeout: CALL_TIMEOUT_MS,
    defaultCallOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }),
  });
  let step = 'connect';
  try {
    const auth = client.auth;
    const addUser = async (name: string, role: string): Promise<void> => {
      step = `add user ${name}`;
      await ignoring(EtcdUserExistsError, () => auth.userAdd({ name, options: { no_password: true } }));
      step = `grant role ${role} to user ${name}`;
      // Granting a role the user already has is a no-op in etcd.
      await auth.userGrantRole({ user: name, role });
    };
    step = 'add role root';
    await ignoring(EtcdRoleExistsError, () => auth.roleAdd({ name: 'root' }));
    await addUser(ETCD_USERS.server, 'root');

    step = `add role ${ETCD_USERS.agent}`;
    await ignoring(EtcdRoleExistsError, () => auth.roleAdd({ name: ETCD_USERS.agent }));
    step = `grant ${ETCD_USERS.agent} its keys`;
    const grant = async (permType: 'Read' | 'Readwrite', prefix: string): Promise<void> => {
      const r = byteRange(prefix, { prefix: true });
      await auth.roleGrantPermission({ name: ETCD_USERS.agent, perm: { permType, key: r.start, range_end: r.end ?? Buffer.from([0]) } });
    };
    await grant('Read', AGENT_READ);
    for (const prefix of AGENT_WRITE) await grant('Readwrite', prefix);
    await auth.roleGrantPermission({
      name: ETCD_USERS.agent,
      perm: { permType: 'Read', key: Buffer.from(REVISION_PROBE_KEY), range_end: Buffer.alloc(0) },
    });
    await addUser(ETCD_USERS.agent, ETCD_USERS.agent);

    step = 'enable auth';
    await auth.authEnable();
  } catch (err) {
    throw new BerthError(EtcdAuthErrorCode, `enable etcd auth at ${o.endpoints.join(', ')}: ${step} failed: ${errorMessage(err)}`, {
      cause: err,
      retryable: err instanceof Error && isRecoverableError(err),
    });
  } finally {
    client.close();
  }
}
