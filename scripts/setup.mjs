// `npm run setup`: install, generate and build, as `npm start` and `npm test` do first.
import { ensureSetup } from './lib.mjs';

try {
  ensureSetup({ quiet: process.argv.includes('--quiet') });
} catch (error) {
  console.error(`concord setup failed: ${error.message}`);
  process.exit(1);
}
