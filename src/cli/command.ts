import type { Command } from 'commander';
import type { CliContext } from './context.js';

/** Every command file exports one of these; program.ts calls them all. */
export type Register = (program: Command, ctx: CliContext) => void;

export interface AppFlags {
  app?: string;
  remote?: string;
  json?: boolean;
}

/** -a/--app and -r/--remote, as the heroku CLI spells them. */
export function appFlags(cmd: Command): Command {
  return cmd.option('-a, --app <app>', 'app to run command against').option('-r, --remote <remote>', 'git remote of app to use');
}

export function enc(segment: string): string {
  return encodeURIComponent(segment);
}
