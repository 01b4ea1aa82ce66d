import type { OptionSpec, Parsed } from './command.js';
import { invalidInput } from '../base/errors.js';
import type { PolicyInput } from '../policy/input.js';
import { readRequest, REQUEST_FIELDS, type RequestField } from './policy-request-fields.js';

/**
 * `bpfd policy eval`'s request flags: a request described on the command line, built into policy
 * input by the code a real request uses (core/policy-request.ts). The same names are the fields
 * of a `bpfd policy test` case, `--group` excepted (`groups` there).
 */
export const requestOptions: Record<string, OptionSpec> = {
  object: { type: 'string', description: 'the BPF object (.o) the request is about; its bytecode facts are read from it as load does', valueHint: 'OBJ' },
  name: { type: 'string', description: 'the program (function) in the object', valueHint: 'FUNC' },
  type: { type: 'string', description: 'program type when the section does not say, as for load', valueHint: 'TYPE' },
  action: { type: 'string', description: 'load, attach, detach, unload or pull (default load)', valueHint: 'ACTION' },
  as: { type: 'string', description: 'the caller: a user name or uid (USER:UID for a user this machine does not have); default you', valueHint: 'USER|UID' },
  group: { type: 'string', multiple: true, description: "a group of the caller, name or gid; replaces the user's groups from /etc/group", valueHint: 'G' },
  via: { type: 'string', description: 'how the request arrives: cli (a local command, default) or socket (the service)', valueHint: 'cli|socket' },
  owner: { type: 'string', description: 'attach, detach, unload: who loaded the program acted on (default the caller)', valueHint: 'USER|UID' },
  image: { type: 'string', description: 'the image the object came from (a pull needs only this)', valueHint: 'REF' },
  digest: { type: 'string', description: "the image's manifest digest", valueHint: 'D' },
  iface: { type: 'string', description: 'interface the program attaches to (load with attach options, attach, detach)', valueHint: 'IF' },
  netns: { type: 'string', description: 'network namespace file the interface is in', valueHint: 'PATH' },
  priority: { type: 'string', description: 'order on the interface, 0..1000, lower runs first (default 50)', valueHint: 'N' },
  'proceed-on': { type: 'string', multiple: true, description: 'XDP results after which the next program runs (default pass,dispatcher_return)', valueHint: 'ACTION,…' },
  mode: { type: 'string', description: 'skb or drv, as for load (the policy does not see it)', valueHint: 'skb|drv' },
  application: { type: 'string', description: 'application the program belongs to (ordering rules, reserved bands)', valueHint: 'NAME' },
  metadata: { type: 'string', multiple: true, description: 'a KEY=VALUE label of the request', valueHint: 'K=V' },
  existing: {
    type: 'string',
    description: 'JSON list of the programs already on the interface ({name, priority, application, owner}), or `bpfd list -o json` saved from a host',
    valueHint: 'FILE.json',
  },
};

/** The request a command line describes, as policy input (the --input path does not come here). */
export async function inputFromFlags(values: Parsed['values']): Promise<PolicyInput> {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    const field = k === 'group' ? 'groups' : k;
    if (v !== undefined && (REQUEST_FIELDS as readonly string[]).includes(field) && !['input', 'data', 'policy'].includes(field)) fields[field] = v;
  }
  if (Object.keys(fields).length === 0) {
    throw invalidInput('give the request: --object OBJ --name FUNC [request flags], or a whole input with --input FILE (see: bpfd policy eval --help)', [
      'e.g. bpfd policy eval --object fixtures/bytecode/xdp_count.o --name xdp_count --as 1001 --group netops --iface eth0 --priority 150',
    ]);
  }
  const label = (f: RequestField) => (f === 'groups' ? '--group' : `--${f}`);
  const spec = readRequest(fields, { label, baseDir: process.cwd() });
  // libbpf (koffi) and the ELF reader load only for a described request
  const { describedInput } = await import('../core/policy-request.js');
  return describedInput(spec.request!, label);
}

/** The request flags given on a command line, for "--input is the whole input: leave out …". */
export const requestFlagsGiven = (values: Parsed['values']): string[] =>
  Object.keys(requestOptions).filter((k) => values[k] !== undefined).map((k) => `--${k}`);
