// The executable's entry: the command line, with the service front end plugged in. cli/ and api/
// are one layer and know nothing of each other; `bpfd system service` is a command of the CLI
// whose work is the API's, so the two meet here, above both.
import { cli } from '../cli/main.js';
import { provideServiceRunner } from '../cli/service.js';

// loaded on demand: no other command pays for http2 and protobufjs
provideServiceRunner(async (opts) => (await import('../api/service.js')).runService(opts));

export { cli };
