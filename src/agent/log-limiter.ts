/**
 * A per-app budget of log lines (Logplex's L10): a token bucket per app, refilled at `linesPerSecond`
 * up to `burst`. Past it lines are dropped, and one notice per `noticeMs` says how many and since
 * when. Cheap on the drop path (a map lookup and arithmetic), so a dyno flooding its output costs
 * the platform little more than reading it.
 */
export interface LogRateOptions {
  /** Sustained lines per second per app (default 500). 0 or less: no limit. */
  linesPerSecond?: number;
  /** Lines an app may send at once above the rate (default 1,000). */
  burst?: number;
  /** A drop is reported at most this long after it happened (ms; default 1 s). */
  noticeMs?: number;
}

/** Where the platform's notices about an app's log stream appear: `berth[logplex]`. */
export const LOGPLEX_DYNO = 'logplex';

/**
 * The budget a line counts against, if any. The tenant's own output (`app[web.1]`, `app[run.2]`,
 * `app[release.1]`) is the app's. Router lines are driven by traffic, so they get a bucket of their
 * own: a busy app neither loses its access log to its output nor the other way round. Every other
 * platform line (state changes, exit reasons, `app[api]` records of what users did, L10 itself) is
 * made at a bounded rate and is what a flood must not hide, so none of them is limited.
 */
export function logBucket(source: string, dyno: string): 'output' | 'router' | undefined {
  if (source === 'app') return dyno === 'api' ? undefined : 'output';
  return source === 'berth' && dyno === 'router' ? 'router' : undefined;
}

/** Heroku's wording, so tools that look for it find it. */
export function overflowNotice(code: 'L10' | 'L11', dropped: number, since: number): string {
  const what = code === 'L10' ? 'output buffer overflow' : 'Tail buffer overflow';
  return `Error ${code} (${what}): ${dropped} messages dropped since ${new Date(since).toISOString()}.`;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
  dropped: number;
  /** Wall-clock time of the first drop not yet reported. */
  since: number;
  timer: NodeJS.Timeout | undefined;
}

/** How often buckets of apps that went quiet are let go (they are as good as new). */
const SWEEP_MS = 60_000;

export class LogRateLimiter {
  private readonly apps = new Map<string, Bucket>();
  private readonly rate: number;
  private readonly burst: number;
  private readonly noticeMs: number;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    options: LogRateOptions,
    /** Called with the L10 text for an app that had lines dropped; never counted against the app. */
    private readonly notice: (appId: string, message: string) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.rate = options.linesPerSecond ?? 500;
    this.burst = Math.max(1, options.burst ?? 1000);
    this.noticeMs = options.noticeMs ?? 1000;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  /** Whether one more line of this app may pass; a refused one is counted for the next notice. */
  admit(appId: string): boolean {
    if (this.rate <= 0 || this.closed) return true;
    const now = this.now();
    let b = this.apps.get(appId);
    if (!b) {
      b = { tokens: this.burst, at: now, dropped: 0, since: 0, timer: undefined };
      this.apps.set(appId, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    if (b.dropped++ === 0) {
      b.since = now;
      const bucket = b;
      b.timer = setTimeout(() => this.report(appId, bucket), this.noticeMs);
      b.timer.unref();
    }
    return false;
  }

  /** Lines refused and not yet reported, per app (for tests and operators). */
  pending(): Record<string, number> {
    return Object.fromEntries([...this.apps].filter(([, b]) => b.dropped > 0).map(([id, b]) => [id, b.dropped]));
  }

  /** Reports what is pending now, then lets every line through. */
  close(): void {
    if (this.closed) return;
    clearInterval(this.sweeper);
    for (const [appId, b] of this.apps) if (b.dropped > 0) this.report(appId, b);
    this.closed = true;
    this.apps.clear();
  }

  private report(appId: string, b: Bucket): void {
    clearTimeout(b.timer);
    b.timer = undefined;
    const dropped = b.dropped;
    b.dropped = 0;
    if (dropped > 0) this.notice(appId, overflowNotice('L10', dropped, b.since));
  }

  private sweep(): void {
    const now = this.now();
    for (const [appId, b] of this.apps) {
      if (b.dropped === 0 && b.tokens + ((now - b.at) * this.rate) / 1000 >= this.burst) this.apps.delete(appId);
    }
  }
}
