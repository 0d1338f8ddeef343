/**
 * The default-deny policy of one machine, as one nftables table (`table inet <name>`): a dyno
 * reaches its own app's dynos on any port, the outside world, and this machine's public ports;
 * builds reach only the outside world; nothing of ours reaches a dyno but machines.
 */
export interface PolicySnapshot {
  /** The overlay range (every dyno and build address is in it). */
  overlay: string;
  /** This machine's ports a dyno may open (the router's HTTP/HTTPS, the API). */
  publicPorts: number[];
  /** Addresses and CIDRs no dyno or build may reach: every machine's underlay address, the store, link-local. */
  internal: string[];
  /** Sources allowed to open connections to dynos: every machine's underlay and VXLAN gateway address. */
  trusted: string[];
  /** Overlay address → its app's group (the app uid), for every dyno in the cluster. */
  owners: Map<string, number>;
  /** This machine's build namespaces' addresses: egress only. */
  builds: string[];
  /** Every machine's public ports at each of its addresses: the only ports of `internal` a dyno may open. */
  publicEndpoints: [ip: string, port: number][];
  /** The resolvers dynos and builds are given: port 53 of these stays open whatever else they are. */
  resolvers: string[];
  /** VXLAN's UDP port: only machines may send to it, and no dyno or build anywhere. */
  vxlanPort?: number;
}

/** Element changes, applied in one nft transaction. */
export interface PolicyChanges {
  owners?: { set: [ip: string, group: number][]; del: string[] };
  internal?: { add: string[]; del: string[] };
  trusted?: { add: string[]; del: string[] };
  builds?: { add: string[]; del: string[] };
}

export interface PolicyTable {
  /** Replaces the whole table in one transaction: nothing is ever half loaded. */
  load(snapshot: PolicySnapshot): Promise<void>;
  /** Changes elements in one transaction (the table must be loaded). */
  apply(changes: PolicyChanges): Promise<void>;
  /** Deletes the table. */
  remove(): Promise<void>;
}
