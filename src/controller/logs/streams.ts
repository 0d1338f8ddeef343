import { BerthError, ErrorCode } from '../../domain/errors.js';

export interface LogStreamLimits {
  /** Streams open at once for one app on this server (default 10); past it, 429. */
  perApp?: number;
}

interface Open {
  appId: string;
  close: () => void;
}

/**
 * The log streams this server has open. A session URL streams once at a time: opening it again
 * (an EventSource reconnecting before the server noticed the old connection was gone) closes the
 * older stream, rather than letting one URL hold any number of responses for its five minutes. An
 * app has a small number open at once, so sessions made in a loop cannot add up either.
 */
export class LogStreams {
  private readonly sessions = new Map<string, Open>();
  private readonly apps = new Map<string, number>();
  private readonly perApp: number;

  constructor(limits: LogStreamLimits = {}) {
    this.perApp = limits.perApp ?? 10;
  }

  /**
   * A slot for a stream of `sessionId`: `close` ends the stream if a newer one of the same session
   * takes its place. Returns the release (call it once the response has closed; extra calls do
   * nothing). Throws 429 when the app has its limit open already.
   */
  claim(sessionId: string, appId: string, close: () => void): () => void {
    const older = this.sessions.get(sessionId);
    if (older) {
      this.release(sessionId, older);
      older.close();
    }
    const open = this.apps.get(appId) ?? 0;
    if (open >= this.perApp) throw new BerthError(ErrorCode.RateLimit, `This app has ${this.perApp} log streams open already. Close one (or wait for it to end) before opening another.`);
    const entry: Open = { appId, close };
    this.sessions.set(sessionId, entry);
    this.apps.set(appId, open + 1);
    return () => this.release(sessionId, entry);
  }

  /** Streams open now for an app (for tests and operators). */
  open(appId: string): number {
    return this.apps.get(appId) ?? 0;
  }

  private release(sessionId: string, entry: Open): void {
    if (this.sessions.get(sessionId) !== entry) return;
    this.sessions.delete(sessionId);
    const left = (this.apps.get(entry.appId) ?? 1) - 1;
    if (left > 0) this.apps.set(entry.appId, left);
    else this.apps.delete(entry.appId);
  }
}
