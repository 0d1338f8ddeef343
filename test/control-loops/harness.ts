import { Agent, type AgentOptions } from '../../src/agent/agent.js';
import { FakeRuntime, type FakeCall } from '../../src/agent/runtime/fake.js';
import { Apps } from '../../src/controller/services/apps.js';
import { Formations } from '../../src/controller/services/formation.js';
import { Releases } from '../../src/controller/services/releases.js';
import type { UserRecord } from '../../src/controller/services/types.js';
import { Users } from '../../src/controller/services/users.js';
import { get, list } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import type { Logger } from '../../src/domain/log.js';
import { LoopbackNetwork, type Attachment, type DynoAttachRequest, type Networks } from '../../src/network/index.js';
import { codecs, type AppRecord, type ReleaseRecord, type StatusRecord, type UnitSpec } from '../../src/domain/records.js';
import { Scheduler, type SchedulerOptions } from '../../src/scheduler/scheduler.js';
import { openStore, type Store, type Watch } from '../../src/store/index.js';
import { silentLog } from '../support/log.js';
import { TestRouter, type TestRouterOptions } from '../support/router.js';

const MiB = 1024 * 1024;

/** The loopback network, with every attach and release on the timeline (`m1 attach <owner> <address:port>`, `m1 release <owner>`). */
class TimelineNetwork implements Networks {
  constructor(
    private readonly inner: Networks,
    private readonly note: (what: string) => void,
  ) {}

  async attachDyno(request: DynoAttachRequest): Promise<Attachment> {
    const a = await this.inner.attachDyno(request);
    this.note(`attach ${request.owner} ${a.address}:${a.port}`);
    return {
      ...a,
      release: async () => {
        await a.release();
        this.note(`release ${request.owner}`);
      },
    };
  }

  attachBuild(id: string): Promise<Attachment> {
    return this.inner.attachBuild(id);
  }
}
const GiB = 1024 * MiB;

export interface TimelineEntry {
  at: number;
  /** `publish shop.web.1@v2 @17`, `unpublish …`, `place m1/shop.web.1@v2 @12`, `remove …`, `router r1 reports 19`, `m1 stop web.1 <id>`, `m1 attach shop.web.1@v2 127.0.0.1:20001`, `m1 release …` */
  what: string;
  revision?: number;
}

export interface TestAgent {
  agent: Agent;
  runtime: FakeRuntime;
  id: string;
  /** The agent's lease-bound records go with this. */
  stop(): Promise<void>;
}

/**
 * Nomad's in-process harness, for Berth: a memory store, real schedulers, real agents on the fake
 * runtime, in-process routers speaking the report handshake, and the controller's own model
 * services to create apps, releases and formations. Everything that happens lands on one
 * timeline (store events under /berth/units/ and /berth/services/, router reports, runtime calls)
 * for ordering assertions.
 */
export class Cluster {
  readonly store: Store;
  readonly log: Logger;
  readonly timeline: TimelineEntry[] = [];
  /** Platform lines the agents sent to app logs: `<appId> <source>[<dyno>]: <message>`. */
  readonly appLines: string[] = [];
  readonly schedulers: Scheduler[] = [];
  readonly agents = new Map<string, TestAgent>();
  readonly routers: TestRouter[] = [];
  readonly apps: Apps;
  readonly releases: Releases;
  readonly formations: Formations;
  /** The user who owns every app the harness creates. */
  owner!: UserRecord;
  private watch: Watch | undefined;
  private closed = false;

  private constructor(store: Store, log: Logger) {
    this.store = store;
    this.log = log;
    this.apps = new Apps(store);
    this.releases = new Releases(store, this.apps);
    this.formations = new Formations(store, this.apps, this.releases);
  }

  static async start(o: { log?: Logger } = {}): Promise<Cluster> {
    const c = new Cluster(openStore('memory://'), o.log ?? silentLog());
    c.owner = (await new Users(c.store).create('owner@example.com')).user;
    await c.follow();
    return c;
  }

  private async follow(): Promise<void> {
    this.watch = await this.store.watch(keys.all(), { prefix: true, startRevision: (await this.store.currentRevision()) + 1 });
    void (async () => {
      try {
        for await (const batch of this.watch as Watch) {
          for (const e of batch.events) {
            const key = e.kv.key;
            const rev = e.kv.modRevision;
            const put = e.type === 'put';
            if (key.startsWith(keys.allServices())) this.note(`${put ? 'publish' : 'unpublish'} ${key.slice(keys.allServices().length).split('/')[1]}`, rev);
            else if (key.startsWith(keys.allUnits())) this.note(`${put ? 'place' : 'remove'} ${key.slice(keys.allUnits().length)}`, rev);
          }
        }
      } catch {
        // Closed with the store.
      }
    })();
  }

  note(what: string, revision?: number): void {
    this.timeline.push({ at: Date.now(), what, ...(revision !== undefined ? { revision } : {}) });
  }

  /** Index of the first timeline entry matching, or -1. */
  indexOf(match: RegExp | string, from = 0): number {
    for (let i = from; i < this.timeline.length; i++) {
      const what = this.timeline[i]?.what ?? '';
      if (typeof match === 'string' ? what === match : match.test(what)) return i;
    }
    return -1;
  }

  async scheduler(id: string, o: Partial<SchedulerOptions> = {}): Promise<Scheduler> {
    const s = new Scheduler({ store: this.store, log: this.log.child({ scheduler: id }), id, ttl: 1, debounceMs: 10, maxWaitMs: 100, ...o });
    await s.start();
    this.schedulers.push(s);
    return s;
  }

  /** An agent on a machine of its own (1 GiB, no tags unless told otherwise), running dynos in a FakeRuntime on the loopback network. */
  async agent(id: string, o: { memoryBytes?: number; tags?: Record<string, string>; startDelayMs?: number; agent?: Partial<AgentOptions> } = {}): Promise<TestAgent> {
    const runtime = new FakeRuntime({
      ...(o.startDelayMs !== undefined ? { startDelayMs: o.startDelayMs } : {}),
      onCall: (call: FakeCall) => this.note(`${id} ${call.op} ${call.dyno} ${call.id}${call.op === 'exit' ? ` ${call.code}` : ''}`),
    });
    const agent = new Agent({
      store: this.store,
      log: this.log.child({ agent: id }),
      machine: { id, name: id, address: '127.0.0.1', tags: o.tags ?? {}, capacity: { memoryBytes: o.memoryBytes ?? GiB, cpus: 2 } },
      runtime,
      // The fake's dynos are listeners in this process: each gets a loopback port of its own.
      network: new TimelineNetwork(new LoopbackNetwork(), (what) => this.note(`${id} ${what}`)),
      slugPath: async (slugId) => `/nonexistent/slugs/${slugId}.tgz`,
      appLog: (appId, source, dyno, message) => this.appLines.push(`${appId} ${source}[${dyno}]: ${message}`),
      ttl: 2,
      bootTimeoutMs: 5000,
      ...o.agent,
    });
    await agent.start();
    const a: TestAgent = {
      agent,
      runtime,
      id,
      stop: async () => {
        await agent.stop();
        this.agents.delete(id);
      },
    };
    this.agents.set(id, a);
    return a;
  }

  async router(id: string, o: Partial<TestRouterOptions> = {}): Promise<TestRouter> {
    const r = new TestRouter({ store: this.store, id, log: this.log.child({ router: id }), onReport: (rev) => this.note(`router ${id} reports ${rev}`, rev), ...o });
    await r.start();
    this.routers.push(r);
    return r;
  }

  /**
   * An app with a built slug whose Procfile is `processTypes` (fake runtime scripts, e.g.
   * `{ web: 'serve' }`), scaled to `formation`.
   */
  async app(name: string, processTypes: Record<string, string>, formation: Record<string, number | { quantity: number; size: string }> = {}): Promise<AppRecord> {
    const app = await this.apps.create(this.owner, name);
    await this.deploy(name, processTypes);
    if (Object.keys(formation).length > 0) await this.scale(name, formation);
    return app;
  }

  /** A new release of a new slug (`release` makes the slug id unique). */
  async deploy(name: string, processTypes: Record<string, string>): Promise<ReleaseRecord> {
    const access = await this.apps.resolve(this.owner, name);
    return this.releases.deploy(this.owner, access, { id: `slug-${name}-${access.app.release_version + 1}`, process_types: processTypes, commit: null });
  }

  async scale(name: string, formation: Record<string, number | { quantity: number; size: string }>): Promise<void> {
    const access = await this.apps.resolve(this.owner, name);
    await this.formations.update(
      this.owner,
      access,
      Object.entries(formation).map(([type, f]) => (typeof f === 'number' ? { type, quantity: f } : { type, ...f })),
    );
  }

  async setTags(name: string, tags: Record<string, string>): Promise<void> {
    const access = await this.apps.resolve(this.owner, name);
    await this.apps.touch(access, [{ type: 'put', key: keys.appTags(access.app.id), value: JSON.stringify(tags) }]);
  }

  async appRecord(name: string): Promise<AppRecord> {
    return (await this.apps.resolve(this.owner, name)).app;
  }

  async release(name: string, version: number): Promise<ReleaseRecord | undefined> {
    const app = await this.appRecord(name);
    return (await get(this.store, keys.release(app.id, version), codecs.release))?.value;
  }

  /** The app's dyno statuses (what `berth ps` shows), by unit key. */
  async statuses(name: string): Promise<Map<string, StatusRecord>> {
    return new Map((await list(this.store, keys.appStatuses(name), codecs.status)).map((e) => [e.value.unit, e.value]));
  }

  /** The units placed for the app, as `<machine>/<unit key>`. */
  async units(name: string): Promise<{ machine: string; key: string; unit: UnitSpec }[]> {
    return (await list(this.store, keys.allUnits(), codecs.unit))
      .filter((e) => e.value.appName === name)
      .map((e) => {
        const [machine = '', key = ''] = e.key.slice(keys.allUnits().length).split('/');
        return { machine, key, unit: e.value };
      });
  }

  /** The published endpoints of the app, by unit key. */
  async endpoints(name: string): Promise<Map<string, string>> {
    return new Map((await list(this.store, keys.services(name), codecs.endpoint)).map((e) => [e.key.slice(keys.services(name).length), e.value]));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.agents.values()].map((a) => a.agent.stop()));
    await Promise.allSettled(this.schedulers.map((s) => s.stop()));
    await Promise.allSettled(this.routers.map((r) => r.stop()));
    this.watch?.close();
    await this.store.close();
  }
}
