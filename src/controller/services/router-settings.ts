import { conflict, invalid } from '../../domain/errors.js';
import { list, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import {
  ROUTER_SETTINGS,
  ROUTER_SETTING_NAMES,
  checkAppRouting,
  checkRouterSetting,
  isRouterSetting,
  parseAppRouting,
  type AppRouting,
  type RouterSettingName,
} from '../../domain/router-settings.js';
import type { Store, TxnOp } from '../../store/index.js';
import type { AppAccess, Apps } from './apps.js';

export interface RouterSettingView {
  name: RouterSettingName;
  value: string;
  /** Not set: the router uses the default. */
  default: boolean;
  description: string;
}

/** The router's platform-wide settings (admins) and each app's routing options (its team). */
export class RouterSettings {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
  ) {}

  async list(): Promise<RouterSettingView[]> {
    const stored = new Map((await list(this.store, keys.routerSettings(), codecs.routerSetting)).map((e) => [e.key.slice(keys.routerSettings().length), e.value]));
    return ROUTER_SETTING_NAMES.map((name) => {
      const value = stored.get(name);
      return { name, value: value ?? ROUTER_SETTINGS[name].default, default: value === undefined, description: ROUTER_SETTINGS[name].describe };
    });
  }

  /** Sets (or, with null, resets) settings all at once: one reload of every router. */
  async set(changes: Record<string, string | null>): Promise<RouterSettingView[]> {
    const ops: TxnOp[] = [];
    for (const [name, value] of Object.entries(changes)) {
      // Unknown names fail the same way whether set or reset.
      if (!isRouterSetting(name)) checkRouterSetting(name, '');
      ops.push(value === null ? { type: 'delete', key: keys.routerSetting(name) } : putOp(keys.routerSetting(name), codecs.routerSetting, checkRouterSetting(name, value)));
    }
    if (ops.length === 0) throw invalid('Name at least one setting, like body_size=10m.');
    await this.store.txn({ compare: [], success: ops });
    return this.list();
  }

  async app(access: AppAccess): Promise<AppRouting> {
    return parseAppRouting((await this.store.get(keys.appRouting(access.app.id)))?.value);
  }

  async setApp(access: AppAccess, changes: Record<string, unknown>): Promise<AppRouting> {
    if (Object.keys(changes).length === 0) throw invalid('Name at least one setting, like redirect_https=true.');
    const next: AppRouting = { ...(await this.app(access)) };
    for (const [name, value] of Object.entries(changes)) next[name as keyof AppRouting] = checkAppRouting(name, value);
    // With the app record, so apps:destroy (which compares it) cannot miss this key.
    if (!(await this.apps.touch(access, [putOp(keys.appRouting(access.app.id), codecs.appRouting, next)]))) throw conflict('The app changed meanwhile; try again.');
    return next;
  }
}
