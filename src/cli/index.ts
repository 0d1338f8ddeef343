/** The CLI component: the `berth` executable's commands. Entry point: main.ts. */
export { register as registerUp } from './commands/up.js';
