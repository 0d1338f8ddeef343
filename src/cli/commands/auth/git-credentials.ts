import type { Register } from '../../command.js';
import { answerCredential, HELPER_SUBCOMMAND } from '../../credentials.js';

/** More than git ever sends for one credential: the rest is not read. */
const MAX_INPUT = 64 * 1024;

async function readInput(stdin: NodeJS.ReadableStream | undefined): Promise<string> {
  if (!stdin) return '';
  let text = '';
  for await (const chunk of stdin) {
    text += String(chunk);
    // git ends its request with a blank line and then closes stdin; stop at either.
    if (text.length > MAX_INPUT || /\n\n$/.test(text)) break;
  }
  return text.slice(0, MAX_INPUT);
}

/**
 * `berth git:credentials get|store|erase`: the git credential helper `berth login` configures for
 * the platform's URL (see credentials.ts). Hidden: git runs it, people do not.
 */
export const register: Register = (program, ctx) => {
  program
    .command(`${HELPER_SUBCOMMAND} <operation>`, { hidden: true })
    .description('answer git credential requests for the platform (configured by berth login)')
    .action(async (operation: string) => {
      const answer = answerCredential(ctx, operation, operation === 'get' ? await readInput(ctx.terminal?.stdin) : '');
      if (!answer) return;
      if (ctx.terminal) ctx.terminal.stdout.write(answer);
      else ctx.out(answer);
    });
};
