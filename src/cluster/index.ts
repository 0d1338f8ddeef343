/**
 * The cluster's machinery (k3s's embedded-etcd HA, in Berth's terms): the CA and certificates
 * (`pki.ts`), the join token that pins the CA (`token.ts`), the etcd member Berth runs on a server
 * (`etcd-member.ts`), etcd's membership and auth (`membership.ts`, `etcd-auth.ts`), the TLS join
 * listener and its client (`join-server.ts`, `join-client.ts`), and what a machine keeps in its
 * data dir to rejoin by itself (`files.ts`, `bootstrap.ts`).
 */
export { bootstrapMachine, TOKEN_FILE, type MachineBootstrapOptions, type MachineCluster } from './bootstrap.js';
export { EtcdMember, clientUrl } from './etcd-member.js';
export { EtcdMaintenance, type MaintenanceOptions } from './maintenance.js';
export { ClusterFiles, type ClusterState } from './files.js';
export { JoinServer, type JoinAnswer, type JoinRequest, type JoinRole, type JoinServerOptions } from './join-server.js';
export { DEFAULT_VOTERS, EtcdMembers, MAX_VOTERS, removalKeepsQuorum, type ClientTls, type Member, type MemberHealth } from './membership.js';
export { caHash, type CertKeyPair } from './pki.js';
export { SealedStore, isSealedKey } from './sealing.js';
export { formatToken, newSecret, parseToken, tokenSecret, type ClusterToken } from './token.js';
