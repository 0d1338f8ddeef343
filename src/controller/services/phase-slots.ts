/**
 * Who may run a release phase now. Each phase holds a loop volume, a namespace, a 512 MiB cgroup
 * and up to 15 minutes, and a tenant can make one per config change: so an app runs at most one
 * at a time, a newer release's phase replaces an older one still waiting (the newer release
 * carries the same code and newer config, and only the newest can become current anyway), and at
 * most `max` run on this node at once.
 *
 * The node's slots are shared fairly between tenants: one owner's apps hold at most `perOwner` of
 * them (half, at least one). A slot once given is held until its phase ends (up to 15 minutes; a
 * phase is never pre-empted), so "at most one while others wait" cannot be enforced after the
 * fact: a tenant with two apps whose release command sleeps would hold a 2-core node's both slots
 * and every other tenant's push would wait behind them. When a slot frees, a phase someone is
 * waiting on (a push) goes before background ones (config changes, rollbacks) that have waited
 * less than a minute, then the owner running fewest, then the order they asked in.
 */

/** A phase waiting for its turn; `go(true)` lets it run, `go(false)` says a newer one replaced it. */
interface Waiter {
  version: number;
  owner: string;
  background: boolean;
  /** When it began to wait: a background phase passed over this long ranks as a push. */
  since: number;
  go(run: boolean): void;
}

interface AppPhases {
  /** The owner whose share the app's running phase counts against; undefined while none runs. */
  running: string | undefined;
  /** The newest phase asked for; only it may run next. */
  queued: Waiter | undefined;
  /** The newest version asked for: an older one asking later is replaced at once. */
  newest: number;
}

/** What a phase is told: run now (and call `done` after), or it was replaced by a newer release. */
export type PhaseTurn = { run: true; done: () => void } | { run: false; by: number };

/** Why a phase waits: its app runs one, its owner's apps hold their share, or the node is full. */
export type PhaseWait = 'app' | 'owner' | 'node';

export interface PhaseAsk {
  /** The app owner's id: the share it counts against. */
  owner: string;
  /** Nobody waits on it (a config change's or a rollback's phase): pushes go first. */
  background?: boolean;
}

export class PhaseSlots {
  private readonly apps = new Map<string, AppPhases>();
  /** Apps with a phase that could not start and no phase running, in the order they asked (each once). */
  private readonly waiting = new Set<string>();
  private readonly byOwner = new Map<string, number>();
  private running = 0;
  readonly perOwner: number;

  constructor(
    private readonly max: number,
    perOwner?: number,
    /** How long a background phase waits behind pushes at most before it ranks as one (60 s). */
    private readonly agingMs = 60_000,
  ) {
    this.perOwner = Math.max(1, perOwner ?? Math.floor(max / 2));
  }

  /** Phases running on this node now. */
  get active(): number {
    return this.running;
  }

  /**
   * A newer release of the app exists: an older phase still waiting is replaced. Also what a
   * release with no phase to run says, so the older one does not run after it for nothing.
   */
  supersede(appId: string, version: number): void {
    const app = this.apps.get(appId);
    if (!app) return;
    if (version > app.newest) app.newest = version;
    if (app.queued && app.queued.version < version) {
      const old = app.queued;
      app.queued = undefined;
      this.waiting.delete(appId);
      old.go(false);
    }
    this.forget(appId, app);
  }

  /** Waits for the turn of `version`'s phase. `onWait` is called once, with why, if it has to wait. */
  async turn(appId: string, version: number, ask: PhaseAsk, onWait: (why: PhaseWait) => void = () => undefined): Promise<PhaseTurn> {
    let app = this.apps.get(appId);
    if (!app) {
      app = { running: undefined, queued: undefined, newest: 0 };
      this.apps.set(appId, app);
    }
    if (version < app.newest) return { run: false, by: app.newest };
    app.newest = version;
    const mine = app;
    const run = await new Promise<boolean>((go) => {
      const old = mine.queued;
      // Takes the older one's place in the line (`waiting` keeps the app where it was).
      mine.queued = { version, owner: ask.owner, background: ask.background ?? false, since: Date.now(), go };
      old?.go(false);
      const why = this.blocked(mine, ask.owner);
      if (why === undefined) return this.start(appId, mine);
      if (mine.running === undefined) this.waiting.add(appId);
      onWait(why);
    });
    if (!run) return { run: false, by: mine.newest };
    let released = false;
    return {
      run: true,
      done: () => {
        if (released) return;
        released = true;
        const owner = mine.running ?? '';
        mine.running = undefined;
        this.running--;
        const left = (this.byOwner.get(owner) ?? 1) - 1;
        if (left > 0) this.byOwner.set(owner, left);
        else this.byOwner.delete(owner);
        // Its next phase queues behind the other apps' waiting ones.
        if (mine.queued) this.waiting.add(appId);
        this.forget(appId, mine);
        this.fill();
      },
    };
  }

  /** Why a phase of `owner` for this app cannot start now; undefined when it can. */
  private blocked(app: AppPhases, owner: string): PhaseWait | undefined {
    if (app.running !== undefined) return 'app';
    // Before the node's count: a free slot would not help it.
    if ((this.byOwner.get(owner) ?? 0) >= this.perOwner) return 'owner';
    if (this.running >= this.max) return 'node';
    return undefined;
  }

  private start(appId: string, app: AppPhases): void {
    const w = app.queued;
    if (!w) return;
    app.queued = undefined;
    app.running = w.owner;
    this.running++;
    this.byOwner.set(w.owner, (this.byOwner.get(w.owner) ?? 0) + 1);
    this.waiting.delete(appId);
    w.go(true);
  }

  /**
   * Hands free slots to waiting phases that may run: pushes first, then the owner running fewest,
   * then the order they asked in. A phase that could run never waits while a slot is free, so only
   * a phase ending (or the node's count dropping) can let another start.
   */
  private fill(): void {
    while (this.running < this.max) {
      let best: { id: string; app: AppPhases; rank: number } | undefined;
      for (const id of this.waiting) {
        const app = this.apps.get(id);
        const w = app?.queued;
        if (!app || !w) {
          this.waiting.delete(id);
          continue;
        }
        if (this.blocked(app, w.owner) !== undefined) continue;
        // Aged: a steady stream of other tenants' pushes must not hold off a rollback for good.
        const later = w.background && Date.now() - w.since < this.agingMs;
        const rank = (later ? this.max + 1 : 0) + (this.byOwner.get(w.owner) ?? 0);
        if (!best || rank < best.rank) best = { id, app, rank };
        if (rank === 0) break;
      }
      if (!best) return;
      this.start(best.id, best.app);
    }
  }

  /** An app with nothing running or waiting leaves the map: it holds apps with phases, not every app. */
  private forget(appId: string, app: AppPhases): void {
    if (app.running === undefined && !app.queued && this.apps.get(appId) === app) this.apps.delete(appId);
  }
}
