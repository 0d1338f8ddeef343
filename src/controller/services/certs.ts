import { randomUUID } from 'node:crypto';
import { certsForHosts, type CertRecord } from '../../domain/certs.js';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { deleteOp as del, list, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { AppAccess, Apps } from './apps.js';
import type { Domains } from './domains.js';
import { generateAppName } from './names.js';
import { checkCertificate } from './x509.js';

/** Enough for any real app; keeps nginx.conf and the router's start small. */
const MAX_PER_APP = 20;

/**
 * TLS certificates of an app (Heroku's SNI endpoints). A certificate serves the app's hostnames
 * (`<app>.<domain>` and its custom domains) that its names cover, so adding a matching custom
 * domain later needs no further step. The router reads them from /berth/certs/.
 */
export class SniEndpoints {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    private readonly domains: Domains,
  ) {}

  async list(access: AppAccess): Promise<CertRecord[]> {
    const all = (await list(this.store, keys.certs(access.app.id), codecs.cert)).map((e) => e.value);
    return all.sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(access: AppAccess, idOrName: string): Promise<CertRecord> {
    const c = (await this.list(access)).find((x) => x.id === idOrName || x.name === idOrName);
    if (!c) throw notFound('SNI endpoint');
    return c;
  }

  /** The hostnames each of the app's certificates serves, by certificate id (the router's rule). */
  async served(access: AppAccess, certs?: CertRecord[]): Promise<Map<string, string[]>> {
    const all = certs ?? (await this.list(access));
    const hosts = (await this.domains.list(access)).map((d) => d.hostname);
    const out = new Map<string, string[]>(all.map((c) => [c.id, []]));
    for (const [host, cert] of certsForHosts(hosts, all)) out.get(cert.id)?.push(host);
    return out;
  }

  async add(access: AppAccess, certificateChain: string, privateKey: string): Promise<CertRecord> {
    const checked = checkCertificate(certificateChain, privateKey);
    if ((await this.list(access)).length >= MAX_PER_APP) throw invalid(`${access.app.name} already has ${MAX_PER_APP} certificates; remove one first.`);
    const now = new Date().toISOString();
    const cert: CertRecord = {
      id: randomUUID(),
      name: generateAppName(),
      app_id: access.app.id,
      certificate_chain: checked.chain,
      private_key: checked.key,
      ssl_cert: checked.info,
      created_at: now,
      updated_at: now,
    };
    if (!(await this.apps.touch(access, [putOp(keys.cert(access.app.id, cert.id), codecs.cert, cert)]))) throw conflict('The app changed while adding the certificate; try again.');
    return cert;
  }

  /** Replaces the certificate and key of an endpoint (a renewal), keeping its id and name. */
  async update(access: AppAccess, idOrName: string, certificateChain: string, privateKey: string): Promise<CertRecord> {
    const current = await this.get(access, idOrName);
    const checked = checkCertificate(certificateChain, privateKey);
    const cert: CertRecord = { ...current, certificate_chain: checked.chain, private_key: checked.key, ssl_cert: checked.info, updated_at: new Date().toISOString() };
    if (!(await this.apps.touch(access, [putOp(keys.cert(access.app.id, cert.id), codecs.cert, cert)]))) throw conflict('The app changed while updating the certificate; try again.');
    return cert;
  }

  async remove(access: AppAccess, idOrName: string): Promise<CertRecord> {
    const cert = await this.get(access, idOrName);
    if (!(await this.apps.touch(access, [del(keys.cert(access.app.id, cert.id))]))) throw conflict('The app changed while removing the certificate; try again.');
    return cert;
  }
}
