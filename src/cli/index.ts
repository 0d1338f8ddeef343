/** The CLI component: the `berth` executable. Entry point: main.ts; commands: program.ts. */
export { createProgram } from './program.js';
export { processContext, type CliContext } from './context.js';
