// One bpfman.v1 call from its own process, so that it can run as another user (setpriv) and
// reach the service with that user's credentials: `node grpc-call.js ADDRESS METHOD JSON`.
// Prints {code, details, response} as JSON.
import { client } from './service.js';

const [address, method, request] = process.argv.slice(2);
const c = client(address);
const r = await c.call(method, JSON.parse(request ?? '{}'));
c.close();
process.stdout.write(JSON.stringify(r));
