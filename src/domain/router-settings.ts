import { invalid } from './errors.js';
import { codecs, type AppRouting } from './records.js';

/**
 * The router's settings: platform-wide ones under /berth/router/<name> (admins, `berth router:set`),
 * in nginx's own syntax because they go into nginx.conf as they are; and per-app ones under
 * /berth/app-routing/<app> (the app's owner and collaborators). The controller validates on write;
 * the router validates again on read, so a hand-edited key cannot make nginx refuse its config.
 */

/** "1m30s", "500ms", "30" (seconds): nginx's time syntax, in milliseconds. */
export function nginxTimeMs(value: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, M: 2_592_000_000, y: 31_536_000_000 };
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  if (!/^(\d+(ms|[smhdwMy]))+$/.test(value)) return undefined;
  let ms = 0;
  for (const m of value.matchAll(/(\d+)(ms|[smhdwMy])/g)) ms += Number(m[1]) * (units[m[2] ?? 's'] ?? 0);
  return ms;
}

function time(name: string, max: string, maxMs: number): (v: string) => string {
  return (v) => {
    const ms = nginxTimeMs(v);
    if (ms === undefined || ms <= 0 || ms > maxMs) throw invalid(`${name} must be an nginx time above 0 and at most ${max}, like 500ms, 30s or 1m30s; got "${v}".`);
    return v;
  };
}

const SIZE = /^\d+[kKmMgG]?$/;

export const ROUTER_SETTINGS = {
  body_size: {
    default: '100m',
    describe: 'largest request body (nginx size: 512k, 10m, 1g; 0 for no limit)',
    check: (v: string): string => {
      if (!SIZE.test(v)) throw invalid(`body_size must be an nginx size like 512k, 10m or 1g (0 for no limit); got "${v}".`);
      return v.toLowerCase();
    },
  },
  connect_timeout: { default: '5s', describe: 'time to connect to a dyno (nginx time: 500ms, 5s)', check: time('connect_timeout', '75s', 75_000) },
  read_timeout: { default: '30s', describe: 'time a dyno may take between two reads or writes (nginx time)', check: time('read_timeout', '1h', 3_600_000) },
  worker_connections: {
    default: '4096',
    describe: 'connections per nginx worker, clients and dynos together (64-65535)',
    check: (v: string): string => {
      if (!/^\d+$/.test(v) || Number(v) < 64 || Number(v) > 65535) throw invalid(`worker_connections must be a whole number from 64 to 65535; got "${v}".`);
      return String(Number(v));
    },
  },
} as const;

export type RouterSettingName = keyof typeof ROUTER_SETTINGS;
export const ROUTER_SETTING_NAMES = Object.keys(ROUTER_SETTINGS) as RouterSettingName[];

export function isRouterSetting(name: string): name is RouterSettingName {
  return Object.hasOwn(ROUTER_SETTINGS, name);
}

/** The value to store for `name`, or a coded error naming what is allowed. */
export function checkRouterSetting(name: string, value: string): string {
  if (!isRouterSetting(name)) throw invalid(`Unknown router setting "${name}". Settings: ${ROUTER_SETTING_NAMES.join(', ')} (and per app: ${APP_ROUTING_NAMES.join(', ')}).`);
  return ROUTER_SETTINGS[name].check(value.trim());
}

/** Every setting as nginx will use it: the stored value if it is valid, else the default. */
export function effectiveRouterSettings(stored: (name: RouterSettingName) => string | undefined): Record<RouterSettingName, string> {
  const out = {} as Record<RouterSettingName, string>;
  for (const name of ROUTER_SETTING_NAMES) {
    const v = stored(name);
    let value: string = ROUTER_SETTINGS[name].default;
    try {
      if (v !== undefined) value = ROUTER_SETTINGS[name].check(v);
    } catch {
      // Written around the API: nginx keeps working with the default.
    }
    out[name] = value;
  }
  return out;
}

export type { AppRouting };

export const APP_ROUTING_DEFAULTS: AppRouting = { redirect_https: false };
export const APP_ROUTING_NAMES = Object.keys(APP_ROUTING_DEFAULTS) as (keyof AppRouting)[];

export function isAppRoutingSetting(name: string): name is keyof AppRouting {
  return Object.hasOwn(APP_ROUTING_DEFAULTS, name);
}

/** `redirect_https=true` as typed on a command line, or as JSON. */
export function checkAppRouting(name: string, value: unknown): boolean {
  if (!isAppRoutingSetting(name)) throw invalid(`Unknown app routing setting "${name}". Per-app settings: ${APP_ROUTING_NAMES.join(', ')}.`);
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw invalid(`${name} must be true or false; got "${String(value)}".`);
}

/** A stored `/berth/app-routing/<app>` value (or none) as the router uses it: a bad value is the defaults. */
export function parseAppRouting(json: string | undefined): AppRouting {
  if (json === undefined) return { ...APP_ROUTING_DEFAULTS };
  try {
    return { redirect_https: codecs.appRouting.decode(json).redirect_https };
  } catch {
    return { ...APP_ROUTING_DEFAULTS };
  }
}
