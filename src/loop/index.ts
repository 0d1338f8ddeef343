/**
 * The control-loop primitive every Berth loop is built from (agent, scheduler, router, one-off
 * runner): a lease kept and re-taken with backoff (`Registration`), list-then-watch with state fed
 * from the watch (`ControlLoop`), serialised passes whose triggers merge, debounced with a maximum
 * wait (`Passes`).
 */
export { ControlLoop, type ControlLoopOptions, type Loaded, type LoadReason } from './control-loop.js';
export { Passes, type PassesOptions } from './passes.js';
export { Registration, type RegistrationOptions } from './registration.js';
