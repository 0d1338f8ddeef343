import { Command } from 'commander';
import type { Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { register as registerUp } from '../up.js';
import { checkUnitName, DEFAULT_ENV_FILE, DEFAULT_UNIT_DIR, systemctl, systemdRuns, unitFile, writeAtomic } from './systemd.js';
import { renderEnvFile, renderUnit, serviceCommand } from './unit.js';

interface InstallOptions {
  unitDir: string;
  environmentFile: string;
  unitName: string;
  enable: boolean;
}

/** `--token X` / `--token=X` out of the flags: the token goes to the EnvironmentFile. */
export function takeToken(flags: string[]): { flags: string[]; token?: string } {
  const rest: string[] = [];
  let token: string | undefined;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i] as string;
    if (f === '--token') {
      token = flags[++i];
      if (token === undefined) throw invalid('--token needs a value.');
    } else if (f.startsWith('--token=')) token = f.slice('--token='.length);
    else rest.push(f);
  }
  return token === undefined ? { flags: rest } : { flags: rest, token };
}

/** The flags as `berth up` itself parses them, so a typo fails now rather than at every restart. */
async function checkUpFlags(flags: string[], err: (s: string) => void): Promise<void> {
  const probe = new Command().exitOverride().configureOutput({ writeOut: () => undefined, writeErr: (s) => err(s.replace(/\n$/, '')) });
  registerUp(probe);
  const up = probe.commands.find((c) => c.name() === 'up') as Command;
  up.exitOverride().configureOutput({ writeOut: () => undefined, writeErr: (s) => err(s.replace(/\n$/, '')) });
  up.action(() => undefined);
  try {
    await probe.parseAsync(['up', ...flags], { from: 'user' });
  } catch {
    throw invalid(`berth up does not take these flags: ${flags.join(' ')}`);
  }
}

/**
 * `berth service:install [berth up flags]`: a systemd unit that runs `berth up <flags>` from this
 * checkout (unit.ts says what each setting is for), the token and BERTH_* settings in an
 * EnvironmentFile (0600), then enabled and started where systemd runs the machine.
 */
export const register: Register = (program, ctx) => {
  program
    .command('service:install')
    .description('run berth up as a systemd service: service:install [berth up flags] (a --token goes to the 0600 env file)')
    .option('--unit-dir <dir>', 'where the unit is written', DEFAULT_UNIT_DIR)
    .option('--environment-file <file>', 'the EnvironmentFile holding the token and BERTH_* settings', DEFAULT_ENV_FILE)
    .option('--unit-name <name>', 'the service name (one per platform on this machine)', 'berth')
    .option('--no-enable', 'write the files only; do not enable or start the service')
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[up-flags...]', 'flags for berth up')
    .action(async (upFlags: string[], opts: InstallOptions) => {
      if (!ctx.self) throw invalid('service:install runs from the berth command, not in-process.');
      const name = checkUnitName(opts.unitName);
      const { flags, token } = takeToken(upFlags);
      await checkUpFlags(flags, ctx.err);
      const { command, workingDirectory } = serviceCommand(ctx.self);
      const unit = renderUnit({ command: [...command, ...flags], workingDirectory, envFile: opts.environmentFile });
      const env = renderEnvFile(ctx.env, token);
      const paths = { unitDir: opts.unitDir, envFile: opts.environmentFile, unitName: name };
      writeAtomic(opts.environmentFile, env, 0o600);
      writeAtomic(unitFile(paths), unit, 0o644);
      ctx.out(`Wrote ${unitFile(paths)} and ${opts.environmentFile} (mode 0600)`);
      if (!opts.enable) return;
      if (!systemdRuns()) {
        ctx.out(`systemd is not running this machine (PID 1 is something else): start the service where it is with\n  systemctl daemon-reload && systemctl enable --now ${name}\nor run it by hand: (set -a; . ${opts.environmentFile}; exec ${[...command, ...flags].join(' ')})`);
        return;
      }
      await systemctl('daemon-reload');
      await systemctl('enable', '--now', name);
      ctx.out(`Started ${name}: systemctl status ${name}, journalctl -u ${name} -f`);
    });
};
