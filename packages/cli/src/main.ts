// The `concord` command. The only place of the CLI that reads argv/env.
import { buildProgram } from './program.js';

const program = buildProgram({ env: process.env, stdout: process.stdout, stderr: process.stderr });
program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`concord: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
