export { buildProgram } from './program.js';
export { formatStatusTable } from './status-table.js';
