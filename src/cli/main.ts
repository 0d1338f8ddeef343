#!/usr/bin/env node
import { CommanderError } from 'commander';
import { processContext } from './context.js';
import { formatError } from './output.js';
import { createProgram } from './program.js';

/** The `berth` executable. Commands live one per file under commands/, listed in program.ts. */
const ctx = processContext();
try {
  await createProgram(ctx).parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander has printed its message (unknown command with a suggestion, missing argument…).
    process.exitCode = err.exitCode;
  } else {
    ctx.err(formatError(err));
    process.exitCode = 1;
  }
}
