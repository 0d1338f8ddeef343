import { Command } from 'commander';
import type { Register } from './command.js';
import { register as templater } from './commands/templater.js';
import { register as up } from './commands/up.js';
import { register as agent } from './commands/agent.js';
import type { CliContext } from './context.js';
import { register as authLogin } from './commands/auth/login.js';
import { register as authLogout } from './commands/auth/logout.js';
import { register as authWhoami } from './commands/auth/whoami.js';
import { register as gitCredentials } from './commands/auth/git-credentials.js';
import { register as serviceInstall } from './commands/service/install.js';
import { register as serviceUninstall } from './commands/service/uninstall.js';
import { register as apps } from './commands/apps/index.js';
import { register as appsCreate } from './commands/apps/create.js';
import { register as appsInfo } from './commands/apps/info.js';
import { register as appsRename } from './commands/apps/rename.js';
import { register as appsDestroy } from './commands/apps/destroy.js';
import { register as appsOpen } from './commands/apps/open.js';
import { register as maintenance } from './commands/maintenance/index.js';
import { register as gitRemote } from './commands/git/remote.js';
import { register as config } from './commands/config/index.js';
import { register as configGet } from './commands/config/get.js';
import { register as configSet } from './commands/config/set.js';
import { register as configUnset } from './commands/config/unset.js';
import { register as releases } from './commands/releases/index.js';
import { register as releasesInfo } from './commands/releases/info.js';
import { register as releasesRollback } from './commands/releases/rollback.js';
import { register as ps } from './commands/ps/index.js';
import { register as psScale } from './commands/ps/scale.js';
import { register as psRestart } from './commands/ps/restart.js';
import { register as run } from './commands/run/index.js';
import { register as runDetached } from './commands/run/detached.js';
import { register as domains } from './commands/domains/index.js';
import { register as domainsAdd } from './commands/domains/add.js';
import { register as domainsRemove } from './commands/domains/remove.js';
import { register as certs } from './commands/certs/index.js';
import { register as certsAdd } from './commands/certs/add.js';
import { register as certsRemove } from './commands/certs/remove.js';
import { register as router } from './commands/router/index.js';
import { register as routerSet } from './commands/router/set.js';
import { register as logs } from './commands/logs/index.js';
import { register as drains } from './commands/drains/index.js';
import { register as drainsAdd } from './commands/drains/add.js';
import { register as drainsRemove } from './commands/drains/remove.js';
import { register as keys } from './commands/keys/index.js';
import { register as keysAdd } from './commands/keys/add.js';
import { register as keysRemove } from './commands/keys/remove.js';
import { register as access } from './commands/access/index.js';
import { register as accessAdd } from './commands/access/add.js';
import { register as accessRemove } from './commands/access/remove.js';
import { register as users } from './commands/users/index.js';
import { register as builds } from './commands/builds/index.js';
import { register as nodes } from './commands/nodes/index.js';
import { register as nodesRemove } from './commands/nodes/remove.js';
import { register as clusterRotateToken } from './commands/cluster/rotate-token.js';
import { register as tagsSet } from './commands/tags/set.js';
import { register as limitsSet } from './commands/limits/set.js';
import { register as healthchecks } from './commands/healthchecks/index.js';
import { register as healthchecksSet } from './commands/healthchecks/set.js';
import { register as healthchecksUnset } from './commands/healthchecks/unset.js';
import { register as buildsOutput } from './commands/builds/output.js';
import { register as buildsCancel } from './commands/builds/cancel.js';
import { register as usersAdd } from './commands/users/add.js';
import { register as usersRegistration } from './commands/users/registration.js';

/** Every command, in the order `berth --help` lists them. */
const COMMANDS: Register[] = [authLogin, authLogout, authWhoami, gitCredentials, apps, appsCreate, appsInfo, appsRename, appsDestroy, appsOpen, maintenance, gitRemote, config, configGet, configSet, configUnset, releases, releasesInfo, releasesRollback, builds, buildsOutput, buildsCancel, ps, psScale, psRestart, run, runDetached, nodes, nodesRemove, clusterRotateToken, tagsSet, limitsSet, healthchecks, healthchecksSet, healthchecksUnset, domains, domainsAdd, domainsRemove, certs, certsAdd, certsRemove, router, routerSet, logs, drains, drainsAdd, drainsRemove, keys, keysAdd, keysRemove, access, accessAdd, accessRemove, users, usersAdd, usersRegistration, serviceInstall, serviceUninstall];

/** Builds the `berth` program for one context (the process's, or a test's). */
export function createProgram(ctx: CliContext): Command {
  const program = new Command()
    .name('berth')
    .description('a self-hosted, Heroku-compatible platform')
    .version('0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.out(s.replace(/\n$/, '')), writeErr: (s) => ctx.err(s.replace(/\n$/, '')) });
  up(program);
  agent(program);
  templater(program);
  for (const register of COMMANDS) register(program, ctx);
  return program;
}
