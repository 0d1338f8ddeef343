/**
 * The agent: one per machine. Registers the machine under a lease, runs the units assigned to it
 * in a runtime, health-checks and publishes them, restarts what crashes.
 */
export { Agent, type AgentOptions, type MachineInfo, type UnitAssignment } from './agent.js';
export { unitKey } from '../domain/units.js';
export { ProcessRuntime } from './runtime/process.js';
export { FakeRuntime, type FakeCall, type FakeRuntimeOptions } from './runtime/fake.js';
export type { Runtime, RunningDyno, DynoSpec } from './runtime/types.js';
export { ControllerLink, type JoinAnswer } from './remote.js';
export { localMachine, machineId, parseTags } from './machine.js';
