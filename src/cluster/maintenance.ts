import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { EtcdMembers, type ClientTls } from './membership.js';

export interface MaintenanceOptions {
  /** This server's own member (its client URL); only it is ever defragmented from here. */
  member: { id?: string; clientUrl: string };
  tls: ClientTls;
  log: Logger;
  /** How often the member's size is looked at (default hourly). */
  everyMs?: number;
  /** Defragment when the file holds at least this much more than etcd uses (default 256 MiB)... */
  slackBytes?: number;
  /** ...and is at least this many times what it uses (default 2). */
  ratio?: number;
}

/**
 * etcd's own upkeep that it leaves to operators: compaction runs inside etcd (hourly, by its
 * flags), but the space compaction frees stays in the file until the member is defragmented,
 * and the 2 GiB quota counts the file. Each server looks after its own member only, so members
 * are never all blocked at once, and only when the slack is large enough to matter (defragmenting
 * blocks that member for its duration).
 */
export class EtcdMaintenance {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly o: MaintenanceOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.once(), this.o.everyMs ?? 60 * 60 * 1000);
    this.timer.unref();
  }

  /** One look, and a defragmentation if it is due. Resolves with whether it defragmented. */
  async once(): Promise<boolean> {
    if (this.running) return false;
    let did = false;
    this.running = (async () => {
      const members = new EtcdMembers([this.o.member.clientUrl], this.o.tls);
      try {
        const [h] = await members.health([{ id: this.o.member.id ?? '', name: '', peerUrls: [], clientUrls: [this.o.member.clientUrl], learner: false }]);
        if (!h?.reachable || h.dbSize === undefined || h.dbSizeInUse === undefined) return;
        const slack = h.dbSize - h.dbSizeInUse;
        if (slack < (this.o.slackBytes ?? 256 * 1024 * 1024) || h.dbSize < (this.o.ratio ?? 2) * h.dbSizeInUse) return;
        const started = Date.now();
        await members.defragment(this.o.member.clientUrl);
        did = true;
        this.o.log.info({ before: h.dbSize, in_use: h.dbSizeInUse, ms: Date.now() - started }, 'etcd member defragmented');
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err) }, 'etcd maintenance failed; trying again next time');
      } finally {
        members.close();
      }
    })().finally(() => (this.running = undefined));
    await this.running;
    return did;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
