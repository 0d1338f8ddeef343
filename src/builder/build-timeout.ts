/** How long a build may run: the operator's default and maximum, and an app's BUILD_TIMEOUT between them. */
export const DEFAULT_BUILD_TIMEOUT_MS = 15 * 60_000;
export const MAX_BUILD_TIMEOUT_MS = 60 * 60_000;

/**
 * The build's time limit: the tenant's BUILD_TIMEOUT (seconds) when it is a positive number, at
 * most the operator's maximum (a bigger one is clamped, and the build says so), else the default.
 */
export function buildTimeout(raw: string | undefined, defaultMs: number, maxMs: number, output: (text: string) => void): number {
  if (raw === undefined || raw.trim() === '') return Math.min(defaultMs, maxMs);
  const sec = Number(raw);
  if (!Number.isFinite(sec) || sec <= 0) {
    output(` !     BUILD_TIMEOUT=${JSON.stringify(raw.slice(0, 32))} is not a positive number of seconds; using ${Math.round(Math.min(defaultMs, maxMs) / 1000)} s.\n`);
    return Math.min(defaultMs, maxMs);
  }
  if (sec * 1000 > maxMs) {
    output(` !     BUILD_TIMEOUT=${raw.trim()} is above this platform's maximum; the build is limited to ${Math.round(maxMs / 1000)} s.\n`);
    return maxMs;
  }
  return sec * 1000;
}
