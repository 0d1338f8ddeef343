import { appName } from '../../app-name.js';
import { appFlags, type AppFlags, type Register } from '../../command.js';
import { changeConfig } from './set.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('config:unset <keys...>').alias('config:remove').description('unset one or more config vars')).action(async (keys: string[], opts: AppFlags) => {
    await changeConfig(ctx, appName(ctx, opts), 'Unsetting', Object.fromEntries(keys.map((k) => [k, null])));
  });
};
