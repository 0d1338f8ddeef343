/** What `until` is told besides what it waits for; a bare number is the timeout. */
export interface UntilOptions {
  /** Default 10 s. */
  timeoutMs?: number;
  /** Pause between probes; default 25 ms (e2e suites asking a whole node pass more). */
  intervalMs?: number;
  /** Appended to the timeout's error: what the system under test said meanwhile (stderr, …). */
  context?: () => string;
}

type Answer<T> = T | undefined | null | false;

/**
 * The one polling helper of the test suites: asks `probe` until it answers something (anything but
 * undefined, null or false) and returns that answer. A probe that throws counts as "not yet"; on
 * timeout the error names what was awaited, the probe's last error and `context()`.
 */
export async function until<T>(what: string, probe: () => Answer<T> | Promise<Answer<T>>, options: number | UntilOptions = {}): Promise<T> {
  const o = typeof options === 'number' ? { timeoutMs: options } : options;
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError === undefined ? '' : ` (last probe failed: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      const context = o.context?.() ?? '';
      throw new Error(`timed out after ${o.timeoutMs ?? 10_000} ms waiting for ${what}${why}${context ? `:\n${context}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 25));
  }
}

/**
 * `until` with a suite's own defaults (a longer timeout, a slower pace, what to print on failure):
 * `const waitFor = untilWith({ timeoutMs: 60_000, context: () => berth.stderr() })`. A number or
 * options given at the call still win.
 */
export function untilWith(defaults: UntilOptions): <T>(what: string, probe: () => Answer<T> | Promise<Answer<T>>, options?: number | UntilOptions) => Promise<T> {
  return (what, probe, options = {}) => until(what, probe, { ...defaults, ...(typeof options === 'number' ? { timeoutMs: options } : options) });
}
