import { conflict, invalid, notFound } from '../../domain/errors.js';
import { deleteOp, get, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import { effectiveHealthChecks, HEALTH_CHECK_TYPES, normalizeHealthCheck, PROCESS_TYPE, type HealthCheck, type HealthCheckType, type HealthChecks } from '../../domain/records/health.js';
import type { Store, TxnOp } from '../../store/index.js';
import { releaseKey, type AppAccess, type Apps } from './apps.js';
import type { UserRecord } from './types.js';

export interface HealthCheckView extends HealthCheck {
  process_type: string;
  /** Where it comes from: the current release's app.json, or `healthchecks:set`. */
  source: 'app.json' | 'healthchecks:set';
}

/**
 * An app's HTTP health checks: app.json's (in the current release's slug) and the per-type
 * overrides `healthchecks:set` keeps at `/berth/apps/<app>/healthchecks`. A change is written with
 * a restart bump of the process type, in one txn with the app record, so the dynos roll over to
 * the new checks (each new one published only once its startup check passes).
 */
export class HealthCheckSettings {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
  ) {}

  /** The checks each process type runs now, effective ones only. */
  async list(access: AppAccess): Promise<HealthCheckView[]> {
    const [override, fromSlug] = await Promise.all([this.override(access), this.fromSlug(access)]);
    const types = [...new Set([...Object.keys(fromSlug ?? {}), ...Object.keys(override?.value ?? {})])].sort();
    return types.flatMap((type) => {
      const mine = new Set((override?.value[type] ?? []).map((c) => c as HealthCheck));
      return effectiveHealthChecks(fromSlug, override?.value, type).map((c) => ({ process_type: type, ...c, source: mine.has(c) ? ('healthchecks:set' as const) : ('app.json' as const) }));
    });
  }

  /** Sets the `check.type` check of `processType` (replacing app.json's checks of that type). */
  async set(user: UserRecord, access: AppAccess, processType: string, fields: unknown): Promise<HealthCheckView[]> {
    checkProcessType(processType);
    let check: HealthCheck;
    try {
      check = normalizeHealthCheck(fields);
    } catch (err) {
      throw invalid(`Invalid health check: ${(err as Error).message}.`);
    }
    return this.change(user, access, processType, (list) => [...list.filter((c) => c.type !== check.type), check]);
  }

  /** Removes `processType`'s overrides (of one check type, or all): app.json's checks apply again. */
  async unset(user: UserRecord, access: AppAccess, processType: string, checkType?: string): Promise<HealthCheckView[]> {
    checkProcessType(processType);
    if (checkType !== undefined && !(HEALTH_CHECK_TYPES as readonly string[]).includes(checkType)) throw invalid(`type must be one of ${HEALTH_CHECK_TYPES.join(', ')}.`);
    return this.change(user, access, processType, (list) => {
      const next = checkType === undefined ? [] : list.filter((c) => c.type !== (checkType as HealthCheckType));
      if (next.length === list.length) throw notFound('health check');
      return next;
    });
  }

  private async change(user: UserRecord, access: AppAccess, processType: string, edit: (list: HealthCheck[]) => HealthCheck[]): Promise<HealthCheckView[]> {
    let fresh = access;
    for (let attempt = 0; attempt < 20; attempt++) {
      const [stored, restarts] = await Promise.all([this.override(fresh), get(this.store, keys.restarts(fresh.app.id), codecs.restarts)]);
      const next: HealthChecks = { ...(stored?.value ?? {}) };
      const list = edit(next[processType] ?? []);
      if (list.length > 0) next[processType] = list;
      else delete next[processType];
      const bumped = { ...(restarts?.value ?? {}), [processType]: (restarts?.value[processType] ?? 0) + 1 };
      const ops: TxnOp[] = [
        Object.keys(next).length > 0 ? putOp(keys.healthchecks(fresh.app.id), codecs.healthchecks, next) : deleteOp(keys.healthchecks(fresh.app.id)),
        putOp(keys.restarts(fresh.app.id), codecs.restarts, bumped),
      ];
      const ok = await this.apps.touch(fresh, ops, [
        { key: keys.healthchecks(fresh.app.id), target: 'mod', op: '=', value: stored?.mod ?? 0 },
        { key: keys.restarts(fresh.app.id), target: 'mod', op: '=', value: restarts?.mod ?? 0 },
      ]);
      if (ok) return this.list({ ...fresh, app: ok.value, mod: ok.mod });
      fresh = await this.apps.resolve(user, access.app.id);
    }
    throw conflict(`Too many concurrent changes to ${access.app.name}; try again.`);
  }

  private override(access: AppAccess): Promise<{ value: HealthChecks; mod: number } | undefined> {
    return get(this.store, keys.healthchecks(access.app.id), codecs.healthchecks);
  }

  /** app.json's checks in the slug of the release that should run. */
  private async fromSlug(access: AppAccess): Promise<HealthChecks | undefined> {
    const release = await get(this.store, releaseKey(access.app.id, access.app.current_version), codecs.release);
    if (!release?.value.slug_id) return undefined;
    return (await get(this.store, keys.slug(release.value.slug_id), codecs.slug))?.value.healthchecks;
  }
}

function checkProcessType(type: string): void {
  if (!PROCESS_TYPE.test(type)) throw invalid(`"${type.slice(0, 64)}" is not a process type name.`);
  // Only web dynos get $PORT (and traffic): another type's HTTP check would have nothing to ask.
  if (type !== 'web') throw invalid('HTTP health checks run against web dynos only (they alone listen on $PORT).');
}
