import type { Register } from '../../command.js';
import { HELPER_SUBCOMMAND, runCredentialHelper } from '../../credentials.js';

/**
 * `berth git:credentials get|store|erase`: the git credential helper `berth login` configures for
 * the platform's URL (see credentials.ts), where the lighter credential-helper entry is missing.
 * Hidden: git runs it, people do not.
 */
export const register: Register = (program, ctx) => {
  program
    .command(`${HELPER_SUBCOMMAND} <operation>`, { hidden: true })
    .description('answer git credential requests for the platform (configured by berth login)')
    .action((operation: string) => runCredentialHelper(ctx, operation));
};
