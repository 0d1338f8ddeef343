#!/usr/bin/env node
import { processContext } from './context.js';
import { runCredentialHelper } from './credentials.js';

/**
 * The git credential helper `berth login` configures (`<this> get|store|erase`): its own entry so
 * a push pays for reading ~/.netrc, not for loading the whole CLI and the platform behind it.
 */
const ctx = processContext();
try {
  await runCredentialHelper(ctx, process.argv[2] ?? '');
} catch (err) {
  // git treats a failing helper as one with no answer; say why on stderr, where git shows it.
  ctx.err(`berth credential helper: ${err instanceof Error ? err.message : String(err)}`);
}
