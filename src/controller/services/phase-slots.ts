/**
 * Who may run a release phase now. Each phase holds a loop volume, a namespace, a 512 MiB cgroup
 * and up to 15 minutes, and a tenant can make one per config change: so an app runs at most one
 * at a time, a newer release's phase replaces an older one still waiting (the newer release
 * carries the same code and newer config, and only the newest can become current anyway), and at
 * most `max` run on this node at once, apps taking turns in the order they asked.
 */

/** A phase waiting for its turn; `go(true)` lets it run, `go(false)` says a newer one replaced it. */
interface Waiter {
  version: number;
  go(run: boolean): void;
}

interface AppPhases {
  /** A phase of this app is running (and holds one of the node's slots). */
  active: boolean;
  /** The newest phase asked for; only it may run next. */
  queued: Waiter | undefined;
  /** The newest version asked for: an older one asking later is replaced at once. */
  newest: number;
}

/** What a phase is told: run now (and call `done` after), or it was replaced by a newer release. */
export type PhaseTurn = { run: true; done: () => void } | { run: false; by: number };

export class PhaseSlots {
  private readonly apps = new Map<string, AppPhases>();
  /** Apps with a phase waiting for a node slot, in the order they asked (each once). */
  private readonly waiting = new Set<string>();
  private running = 0;

  constructor(private readonly max: number) {}

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
      old.go(false);
    }
    this.forget(appId, app);
  }

  /**
   * Waits for the turn of `version`'s phase. `onWait` is called once if it has to wait.
   */
  async turn(appId: string, version: number, onWait: () => void = () => undefined): Promise<PhaseTurn> {
    let app = this.apps.get(appId);
    if (!app) {
      app = { active: false, queued: undefined, newest: 0 };
      this.apps.set(appId, app);
    }
    if (version < app.newest) return { run: false, by: app.newest };
    this.supersede(appId, version);
    app.newest = version;
    this.apps.set(appId, app);
    const mine = app;
    const run = await new Promise<boolean>((go) => {
      mine.queued = { version, go };
      this.pump(appId);
      if (mine.queued?.version === version) onWait();
    });
    if (!run) return { run: false, by: mine.newest };
    let released = false;
    return {
      run: true,
      done: () => {
        if (released) return;
        released = true;
        this.running--;
        mine.active = false;
        this.forget(appId, mine);
        // Its next phase queues behind the other apps' waiting ones.
        if (mine.queued) this.waiting.add(appId);
        for (const next of this.waiting) {
          if (this.running >= this.max) break;
          this.waiting.delete(next);
          this.pump(next);
        }
      },
    };
  }

  /** Starts the app's queued phase if the app runs none and the node has a slot; else it waits. */
  private pump(appId: string): void {
    const app = this.apps.get(appId);
    if (!app?.queued || app.active) return;
    if (this.running >= this.max) {
      this.waiting.add(appId);
      return;
    }
    this.waiting.delete(appId);
    const w = app.queued;
    app.queued = undefined;
    app.active = true;
    this.running++;
    w.go(true);
  }

  /** An app with nothing running or waiting leaves the map: it holds apps with phases, not every app. */
  private forget(appId: string, app: AppPhases): void {
    if (!app.active && !app.queued && this.apps.get(appId) === app) this.apps.delete(appId);
  }
}
