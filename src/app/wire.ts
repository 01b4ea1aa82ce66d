// Plugs the service front end (src/api) into `bpfd system service` (src/cli). Its own module so
// that src/app/entry.ts imports it before the command line starts: imports run in order.
import { provideServiceRunner } from '../cli/service.js';

// loaded on demand: no other command pays for http2 and protobufjs
provideServiceRunner(async (opts) => (await import('../api/service.js')).runService(opts));
