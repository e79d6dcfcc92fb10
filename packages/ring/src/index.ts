export { HashRing } from './ring.js';
export type { TokenRange } from './ring.js';
export { MAX_TOKEN, RING_HASH, TOKEN_SPACE, keyToken, vnodeToken } from './token.js';
export { DEFAULT_VNODES_PER_GROUP, MAX_VNODES_PER_GROUP, compareGroupIds, validateRingConfig } from './config.js';
export type { RingConfig } from './config.js';
