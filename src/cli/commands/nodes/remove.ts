import { clientFor } from '../../api-client.js';
import { enc, type Register } from '../../command.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  program
    .command('nodes:remove <name>')
    .description("remove a dead server's etcd member and credential, by name (or by member id for a member that never started; refused while it answers, or if the live members would lose quorum)")
    .action(async (name: string) => {
      await step(ctx, `Removing ${name} from the cluster`, () => clientFor(ctx).request('DELETE', `/berth/cluster/members/${enc(name)}`));
    });
};
