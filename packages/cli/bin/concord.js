#!/usr/bin/env node
// Committed launcher of the `concord` command: npm links bins before the build creates dist/, so
// the link must point at a file that exists (and is executable) in a fresh clone.
import '../dist/main.js';
