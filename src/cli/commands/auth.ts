import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { SyncguardError } from '../../errors.js';
import type { Cli } from '../context.js';

export function registerAuth(program: Command, cli: Cli): void {
  program
    .command('auth')
    .description('sign in to Dropbox or OneDrive and save a refresh token for an account (mode 0600)')
    .argument('<provider>', 'dropbox or onedrive')
    .requiredOption('--account <name>', 'the account in the config')
    .option(
      '--write',
      'OneDrive: also ask for write access, needed to restore back into the drive (default: read only, so a stolen token file cannot wipe the drive); Dropbox grants what the app allows',
    )
    .action(async (provider: string, o: { account: string; write?: boolean }) => {
      const { findAccount } = await import('../../api.js');
      const ctx = await cli.context();
      const account = findAccount(ctx.config, o.account);
      if (account.provider !== provider) {
        throw new SyncguardError(
          'USAGE',
          `the account "${account.name}" is a ${account.provider} account, not ${provider}`,
        );
      }
      const print = (line: string) => cli.io.stderr.write(line + '\n');
      if (account.provider === 'dropbox') {
        const { runDropboxAuth } = await import('../../providers/dropbox/index.js');
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        try {
          const r = await runDropboxAuth({
            account,
            configDir: ctx.dir,
            print,
            prompt: (q: string) => rl.question(q),
          });
          cli.out.line(`saved the refresh token for "${account.name}" to ${r.credentialsPath}`);
        } finally {
          rl.close();
        }
      } else if (account.provider === 'onedrive') {
        const { runOnedriveAuth } = await import('../../providers/onedrive/index.js');
        const r = await runOnedriveAuth({
          account,
          configDir: ctx.dir,
          print,
          signal: cli.abort.signal,
          write: o.write,
        });
        cli.out.line(
          `signed in${r.username ? ` as ${r.username}` : ''}; saved the token cache for "${account.name}" to ${r.credentialsPath}`,
        );
      } else {
        throw new SyncguardError('USAGE', `"${account.name}" is a local folder and needs no sign-in`);
      }
    });
}
