import { compareGeneration } from '../domain/units.js';
import { formatBytes, unitDisk, unitMemory, type AppView, type Assignment, type MachineView, type PendingUnit, type Plan, type StateView, type UnitSpec } from './types.js';

/**
 * Placement as a pure function of the state view (Nomad's scheduler shape): no I/O, no clock, no
 * randomness, and every input sorted first, so the leader — or a test — gets the same plan from the
 * same state however the store happened to order it.
 */

// Code-unit order, not localeCompare: the plan must not depend on the host's locale.
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const byUnit = (a: UnitSpec, b: UnitSpec): number =>
  cmp(a.appName, b.appName) || cmp(a.appId, b.appId) || cmp(a.type, b.type) || a.index - b.index || compareGeneration(a, b);

/** A unit's identity across releases; the app id guards against a deleted app's name being reused. */
const identity = (u: Pick<UnitSpec, 'appId' | 'name'>): string => `${u.appId}\u0000${u.name}`;

const formatTags = (tags: Record<string, string>): string =>
  Object.keys(tags)
    .sort(cmp)
    .map((k) => `${k}=${tags[k]}`)
    .join(',');

/** The agent gives a host port to web dynos only, so only they compete for the port range. */
const needsPort = (u: UnitSpec): boolean => u.type === 'web';

/** A type's restarts plus the dyno's own: either bump gives the unit a new generation. */
const restart = (app: AppView, type: string, index: number): number => (app.restarts?.[type] ?? 0) + (app.restarts?.[`${type}.${index}`] ?? 0);

function desiredUnits(app: AppView): { units: UnitSpec[]; pending: PendingUnit[] } {
  const units: UnitSpec[] = [];
  const pending: PendingUnit[] = [];
  const release = app.release;
  // Before the first build there is nothing to run, whatever the formation says.
  if (!release?.slugId) return { units, pending };
  const tags = Object.fromEntries(Object.keys(app.placementTags).sort(cmp).map((k) => [k, app.placementTags[k] ?? '']));
  const known = Object.keys(release.processTypes).sort(cmp);
  for (const type of Object.keys(app.formation).sort(cmp)) {
    // `release` runs once per release, in the release phase, never as a long-lived dyno.
    if (type === 'release') continue;
    const entry = app.formation[type];
    if (!entry) continue;
    const quantity = Number.isFinite(entry.quantity) ? Math.max(0, Math.floor(entry.quantity)) : 0;
    const defined = Object.hasOwn(release.processTypes, type);
    for (let index = 1; index <= quantity; index++) {
      const unit: UnitSpec = {
        name: `${app.name}.${type}.${index}`,
        appId: app.id,
        appName: app.name,
        type,
        index,
        release: release.version,
        ...(restart(app, type, index) > 0 ? { restart: restart(app, type, index) } : {}),
        memoryBytes: unitMemory(app, type, entry.size),
        // Only when limits:set asked for one: the runtime's default is the same everywhere.
        ...(app.diskLimits?.[type] !== undefined ? { diskBytes: unitDisk(app, type) } : {}),
        ...(Object.keys(tags).length > 0 ? { tags } : {}),
      };
      if (defined) units.push(unit);
      else pending.push({ unit, reason: `process type ${type} is not defined in release v${release.version} (types: ${known.join(', ') || 'none'})` });
    }
  }
  return { units, pending };
}

/** What a machine already carries, updated as this plan places units on it. */
interface Slot {
  machine: MachineView;
  memoryUsed: number;
  portsUsed: number;
  /** Units that will stay (not superseded), by app id and by app id + type: the anti-affinity counts. */
  perApp: Map<string, number>;
  perType: Map<string, number>;
}

const typeKey = (u: UnitSpec): string => `${u.appId}\u0000${u.type}`;
const bump = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);

function occupy(slot: Slot, unit: UnitSpec, stays: boolean): void {
  slot.memoryUsed += unit.memoryBytes;
  if (needsPort(unit)) slot.portsUsed++;
  // A superseded unit still holds memory and a port until the rollout stops it, but it must not
  // push its replacement away: the layout that matters is the one left after the rollout.
  if (!stays) return;
  bump(slot.perApp, unit.appId);
  bump(slot.perType, typeKey(unit));
}

const memoryFree = (s: Slot): number => s.machine.capacity.memoryBytes - s.memoryUsed;
const portsFree = (s: Slot): number => (s.machine.ports ? s.machine.ports.to - s.machine.ports.from + 1 - s.portsUsed : Infinity);
const usedFraction = (s: Slot): number => (s.machine.capacity.memoryBytes > 0 ? s.memoryUsed / s.machine.capacity.memoryBytes : 1);

/** Anti-affinity first (Deis #3590 stacked every web dyno on one node), then load, then id. */
function better(unit: UnitSpec, a: Slot, b: Slot): number {
  return (
    (a.perType.get(typeKey(unit)) ?? 0) - (b.perType.get(typeKey(unit)) ?? 0) ||
    (a.perApp.get(unit.appId) ?? 0) - (b.perApp.get(unit.appId) ?? 0) ||
    usedFraction(a) - usedFraction(b) ||
    cmp(a.machine.id, b.machine.id)
  );
}

/** The best machine for `unit`, or why there is none — each filter narrows, so the reason is the first that emptied the list. */
function choose(unit: UnitSpec, tags: Record<string, string>, slots: Slot[]): Slot | string {
  if (slots.length === 0) return 'no machines registered';
  const wanted = Object.entries(tags);
  const matching = slots.filter((s) => wanted.every(([k, v]) => s.machine.tags[k] === v));
  const scope = wanted.length > 0 ? ` matching ${formatTags(tags)}` : '';
  if (matching.length === 0) return `no machine matches tags ${formatTags(tags)}`;
  const roomy = matching.filter((s) => memoryFree(s) >= unit.memoryBytes);
  if (roomy.length === 0) return `no machine${scope} has ${formatBytes(unit.memoryBytes)} free`;
  const fits = needsPort(unit) ? roomy.filter((s) => portsFree(s) > 0) : roomy;
  if (fits.length === 0) return `no machine${scope} with ${formatBytes(unit.memoryBytes)} free has a free port`;
  return fits.reduce((best, s) => (better(unit, s, best) < 0 ? s : best));
}

export function plan(state: StateView): Plan {
  const slots = [...state.machines]
    .sort((a, b) => cmp(a.id, b.id))
    .map((machine): Slot => ({ machine, memoryUsed: 0, portsUsed: 0, perApp: new Map(), perType: new Map() }));
  const slotOf = new Map(slots.map((s) => [s.machine.id, s]));
  const apps = [...state.apps].sort((a, b) => cmp(a.name, b.name) || cmp(a.id, b.id));
  const tagsOf = new Map(apps.map((a) => [a.id, a.placementTags]));

  const desired = new Map<string, UnitSpec>();
  const pending: PendingUnit[] = [];
  const frozen = new Set(apps.filter((a) => a.frozen).map((a) => a.id));
  for (const app of apps) {
    if (app.frozen) continue;
    const d = desiredUnits(app);
    for (const u of d.units) desired.set(identity(u), u);
    pending.push(...d.pending);
  }

  const remove: Assignment[] = [];
  const superseded: Assignment[] = [];
  const running = new Set<string>();
  const assignments = [...state.assignments].sort((a, b) => byUnit(a.unit, b.unit) || cmp(a.machine, b.machine));
  for (const a of assignments) {
    const slot = slotOf.get(a.machine);
    // The machine's lease expired with it: its units are lost and get placed again below.
    if (!slot) {
      remove.push(a);
      continue;
    }
    if (frozen.has(a.unit.appId)) {
      occupy(slot, a.unit, true);
      continue;
    }
    const id = identity(a.unit);
    const want = desired.get(id);
    const order = want ? compareGeneration(a.unit, want) : 1;
    if (!want || order > 0 || (order === 0 && running.has(id))) {
      remove.push(a);
    } else if (order === 0) {
      // Stable: a unit keeps its machine even if a better one has appeared since.
      running.add(id);
      occupy(slot, a.unit, true);
    } else {
      superseded.push(a);
      occupy(slot, a.unit, false);
    }
  }

  const place: Assignment[] = [];
  for (const [id, unit] of desired) {
    if (running.has(id)) continue;
    const chosen = choose(unit, tagsOf.get(unit.appId) ?? {}, slots);
    if (typeof chosen === 'string') {
      pending.push({ unit, reason: chosen });
      continue;
    }
    occupy(chosen, unit, true);
    place.push({ machine: chosen.machine.id, unit });
  }

  const byAssignment = (a: Assignment, b: Assignment): number => byUnit(a.unit, b.unit) || cmp(a.machine, b.machine);
  return {
    place: place.sort(byAssignment),
    // Highest index first within a type, so a caller applying removals one by one scales down from the top.
    remove: remove.sort((a, b) => cmp(a.unit.appName, b.unit.appName) || cmp(a.unit.appId, b.unit.appId) || cmp(a.unit.type, b.unit.type) || b.unit.index - a.unit.index || compareGeneration(a.unit, b.unit) || cmp(a.machine, b.machine)),
    superseded: superseded.sort(byAssignment),
    pending: pending.sort((a, b) => byUnit(a.unit, b.unit)),
  };
}
