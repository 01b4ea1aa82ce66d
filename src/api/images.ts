import { PULL_POLICIES, type PullPolicy } from '../base/bpfman-proto.js';
import { RpcError, Status } from './grpc.js';

// bpfman.v1's BytecodeImage as the core's image arguments: the pull policy by name and the
// caller's registry credentials in the form --registry-auth takes. The password stays in the
// request and in the core's Credential, which never prints it; nothing here logs either.

export interface ImageArgs {
  url: string;
  pullPolicy: PullPolicy;
  /** base64 of user:password, or undefined for the service's own credentials (auth files) */
  registryAuth?: string;
}

export function imageArgs(image: Record<string, any> | undefined, field: string): ImageArgs {
  const url = typeof image?.url === 'string' ? image.url.trim() : '';
  if (!url) throw new RpcError(Status.INVALID_ARGUMENT, `${field}.url is missing: give the image reference, e.g. quay.io/org/prog:v1`);
  const n = image!.image_pull_policy ?? 0;
  const pullPolicy: PullPolicy | undefined = PULL_POLICIES[n];
  if (!pullPolicy) throw new RpcError(Status.INVALID_ARGUMENT, `${field}.image_pull_policy ${n} is not a pull policy: give 0 Always, 1 IfNotPresent or 2 Never`);
  const user = typeof image!.username === 'string' ? image!.username : '';
  const password = typeof image!.password === 'string' ? image!.password : '';
  if (!user && !password) return { url, pullPolicy };
  if (!user || !password) throw new RpcError(Status.INVALID_ARGUMENT, `${field}: give both username and password for the registry, or neither`);
  if (user.includes(':')) throw new RpcError(Status.INVALID_ARGUMENT, `${field}.username contains ':', which registry basic auth cannot carry`);
  return { url, pullPolicy, registryAuth: Buffer.from(`${user}:${password}`).toString('base64') };
}
