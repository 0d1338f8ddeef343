#!/usr/bin/env node
import { Command } from 'commander';
import { register as registerUp } from './commands/up.js';
import { formatError } from './output.js';

/** The `berth` executable: one file per command under commands/, wired here. */
const program = new Command()
  .name('berth')
  .description('a self-hosted, Heroku-compatible platform')
  .version('0.1.0')
  .showHelpAfterError();

registerUp(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  console.error(formatError(err));
  process.exitCode = 1;
}
