/**
 * What the builder offers the platform, and the little it needs from it. The builder turns source
 * into slugs and runs commands in them; the controller decides what a push means (a build record,
 * a release, its release phase, the first deploy's scale, postdeploy). The builder defines these
 * interfaces and never imports the controller: the composition root hands it implementations.
 */
import type { SlugRecord, UserRecord } from '../domain/records.js';

/** An app as the git transports need it. */
export interface AppRef {
  id: string;
  name: string;
}

/**
 * A pushed commit. `objects` is git's quarantine environment (GIT_OBJECT_DIRECTORY and friends):
 * until the push is accepted the commit's objects live only there. Opaque to everyone but the builder.
 */
export interface PushSource {
  commit: string;
  objects: Record<string, string>;
}

export interface BuildRequest {
  app: AppRef;
  source: PushSource;
  /** The app's config: the build's environment (ENV_DIR), BUILDPACK_URL, BUILD_TIMEOUT. */
  config: Record<string, string>;
  /** The build's output as it happens, for the pusher. */
  output: (text: string) => void;
  signal?: AbortSignal;
}

export interface BuiltSlug {
  slug: SlugRecord;
  /** The buildpacks that built it, in order. */
  buildpacks: string[];
  /** app.json's `scripts.postdeploy`, if the source has one. */
  postdeploy?: string;
}

/** Source → slug. */
export interface SlugBuilder {
  /** Why this node cannot build (said to every pusher), or undefined when it can. */
  readonly unavailable: string | undefined;
  /**
   * Builds the pushed commit into a slug (stored, with its record) and returns once another live
   * server, if there is one, holds a verified copy; a failure is a coded BerthError
   * (`slug_replication_failed` when no peer could take the copy).
   */
  build(request: BuildRequest): Promise<BuiltSlug>;
  /**
   * Deletes the app's slug records not in `keep` (those younger than a grace stay: a push on
   * another server may be about to release one); every server removes its blob of a checksum once
   * no record points at it.
   */
  collect(appId: string, keep: Set<string>): Promise<number>;
}

export interface SlugCommand {
  appId: string;
  slugId: string;
  /** The environment: the release's config. */
  config: Record<string, string>;
  command: string;
  /** DYNO and PS: `release.1`, `postdeploy`. */
  dyno: string;
  output: (text: string) => void;
  timeoutMs?: number;
}

/** Runs one command in a slug, sandboxed as a one-off dyno would be (release phase, postdeploy). */
export interface SlugRunner {
  /** Resolves true when the command exited 0 (within its time and memory). */
  run(command: SlugCommand): Promise<boolean>;
}

/** Who may reach which app over git: the controller answers for the transports. */
export interface GitAccess {
  /** The app `user` may push to and fetch from; rejects with not_found when they may not see it. */
  resolveApp(user: UserRecord, appIdOrName: string): Promise<AppRef>;
  /** The user who registered the SSH public key with this SHA-256 (hex), and the key as registered. */
  keyOwner(sha256: string): Promise<{ user: UserRecord; publicKey: string } | undefined>;
}

/** Where an accepted-for-building push goes: the controller's deploys. */
export interface Deployer {
  /**
   * Builds and releases `source`, writing what happens to `output`. Resolves true when the push is
   * to be accepted (the ref moves): the build succeeded, even if its release phase failed.
   */
  deploy(user: UserRecord, app: AppRef, source: PushSource, output: (text: string) => void): Promise<boolean>;
}
