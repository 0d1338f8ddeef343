import { rmSync } from 'node:fs';
import type { Register } from '../../command.js';
import { checkUnitName, DEFAULT_ENV_FILE, DEFAULT_UNIT_DIR, systemctl, systemdRuns, unitFile } from './systemd.js';

/** `berth service:uninstall`: stops and disables the service, then removes its unit and env file. */
export const register: Register = (program, ctx) => {
  program
    .command('service:uninstall')
    .description('stop and disable the berth service, and remove its unit and env file')
    .option('--unit-dir <dir>', 'where the unit was written', DEFAULT_UNIT_DIR)
    .option('--environment-file <file>', 'the EnvironmentFile written with it', DEFAULT_ENV_FILE)
    .option('--unit-name <name>', 'the service name', 'berth')
    .action(async (opts: { unitDir: string; environmentFile: string; unitName: string }) => {
      const name = checkUnitName(opts.unitName);
      const unit = unitFile({ unitDir: opts.unitDir, envFile: opts.environmentFile, unitName: name });
      const systemd = systemdRuns();
      // Stopped before its unit goes: systemd cannot stop what it no longer knows.
      if (systemd) await systemctl('disable', '--now', name).catch((err: Error) => ctx.err(`${err.message} (removing the files anyway)`));
      rmSync(unit, { force: true });
      rmSync(opts.environmentFile, { force: true });
      if (systemd) await systemctl('daemon-reload');
      ctx.out(`Removed ${unit} and ${opts.environmentFile}${systemd ? `; ${name} is stopped and disabled` : ''}`);
    });
};
