import path from 'node:path';
import { BpfdError, invalidInput } from '../base/errors.js';
import { cliSubject } from './context.js';
import { policyInputFor, subjectFacts, type GateRequest } from './policy-gate.js';
import { programIn } from './plan.js';
import { objectMaps } from '../loader/object.js';
import { readBpfElf, type BpfElf } from '../loader/elf.js';
import { groupNames, passwdEntry } from '../base/accounts.js';
import { subjectFromCredentials } from '../policy/facts.js';
import type { PolicyAction, PolicyExisting, PolicyImage, PolicyInput, PolicySubject } from '../policy/input.js';
import { parseReference } from '../oci/reference.js';
import { policyImage } from './images.js';
import type { ProgramType } from '../state/records.js';

/**
 * A request described rather than made: what `bpfd policy eval --object` and each case of
 * `bpfd policy test` ask about. It becomes policy input through policyInputFor, the function a
 * real load, attach, detach or unload uses, with the bytecode facts read from the object the same
 * way; only what a real request takes from the store or the kernel is given here instead (the
 * programs already on the interface, the owner of the program acted on, who is asking).
 */
export interface DescribedRequest {
  action: PolicyAction;
  /** the object file (for an image: the object inside it) */
  object?: string;
  name?: string;
  type?: ProgramType;
  image?: string;
  digest?: string;
  /** USER, UID or USER:UID; absent: whoever runs the command */
  as?: string;
  /** group names or gids; absent: the user's groups from /etc/group (like a login) */
  groups?: string[];
  via?: 'cli' | 'sudo' | 'socket' | 'tcp';
  /** who loaded the program acted on (attach, detach, unload): USER, UID or USER:UID; default the subject */
  owner?: string;
  attach?: { iface: string; netns: string | null; priority: number; proceed_on: string[] };
  application?: string | null;
  metadata?: Record<string, string>;
  existing?: PolicyExisting[];
}

/** Names each field as the caller spelled it, so an error points at the flag or the case field. */
export type FieldLabel = (field: 'object' | 'name' | 'image' | 'as' | 'owner' | 'iface' | 'type') => string;

const flagLabel: FieldLabel = (f) => `--${f}`;

export function describedInput(req: DescribedRequest, label: FieldLabel = flagLabel): PolicyInput {
  return policyInputFor(subjectOf(req.as, req.groups, req.via ?? 'cli', label), gateRequest(req, label));
}

function gateRequest(req: DescribedRequest, label: FieldLabel): GateRequest {
  const { action } = req;
  if (action === 'pull') {
    if (!req.image) throw invalidInput(`a pull needs ${label('image')} REF (the image to pull)`);
    return { action, image: describedImage(req.image, undefined, label), application: req.application ?? null, metadata: req.metadata ?? {} };
  }
  if (!req.object) throw invalidInput(`${action} needs ${label('object')} OBJ: the policy decides on facts read from the bytecode`);
  if (!req.name) throw invalidInput(`${action} needs ${label('name')} FUNC: the program's function in ${req.object}`);
  if (action === 'unload' && req.attach) {
    throw invalidInput(`an unload is not about one interface: leave out ${label('iface')} (it detaches every link, then unloads)`);
  }
  if ((action === 'attach' || action === 'detach') && !req.attach) {
    throw invalidInput(`${action} needs ${label('iface')} IF: the interface it ${action === 'attach' ? 'attaches to' : 'is detached from'}`);
  }
  const elf = objectOf(path.resolve(req.object), label);
  const { section, type } = programIn(elf, req.name, req.type, req.attach !== undefined);
  // the map facts as a load takes them: from libbpf's open of the object, no kernel involved
  const maps = objectMaps(elf);
  const onLoaded = action !== 'load';
  return {
    action,
    program: { elf, maps, name: req.name, type, section },
    ...(req.image ? { image: describedImage(req.image, req.digest, label) } : {}),
    attach: req.attach,
    // a load or an attach sees what is on the interface (nothing, without one); detach and unload do not
    ...(action === 'load' || action === 'attach' ? { existingFacts: req.existing ?? [] } : {}),
    ...(onLoaded ? { owner: ownerOf(req, label) } : {}),
    application: req.application ?? null,
    metadata: req.metadata ?? {},
  };
}

/** The object read as load reads it; its errors name this command's field, not load's --path. */
function objectOf(file: string, label: FieldLabel): BpfElf {
  try {
    return readBpfElf(file);
  } catch (e) {
    if (!(e instanceof BpfdError)) throw e;
    throw new BpfdError(e.kind, `${label('object')}: ${e.message}`, e.details.map((d) => d.split('--path').join(label('object'))));
  }
}

function ownerOf(req: DescribedRequest, label: FieldLabel): { uid: number; username: string } {
  const who = req.owner ?? req.as;
  if (who === undefined) {
    const me = cliSubject();
    return { uid: me.uid, username: me.username };
  }
  const u = userOf(who, req.owner ? label('owner') : label('as'));
  return { uid: u.uid, username: u.name };
}

/** USER, UID or USER:UID, with what /etc/passwd knows of it; a uid nobody has keeps its number as its name. */
function userOf(spec: string, where: string): { name: string; uid: number; gid: number } {
  const both = /^([^:\s]+):(\d+)$/.exec(spec);
  if (both) {
    const uid = Number(both[2]);
    return { name: both[1], uid, gid: passwdEntry({ uid })?.gid ?? uid };
  }
  if (/^\d+$/.test(spec)) {
    const uid = Number(spec);
    const known = passwdEntry({ uid });
    return known ?? { name: spec, uid, gid: uid };
  }
  const known = passwdEntry({ name: spec });
  if (!known) {
    throw invalidInput(`${where} ${spec}: no such user on this machine (/etc/passwd)`, [
      `give a uid (${where} 1001), or a name and a uid for a user that exists elsewhere (${where} ${spec}:1001)`,
    ]);
  }
  return known;
}

/**
 * The caller the policy sees. Without --as, whoever runs the command, exactly as a real local
 * request sees them; with it, that user as the service sees a caller over its socket (name and
 * groups from /etc/passwd and /etc/group). --group replaces the supplementary groups, for users
 * that exist only on the hosts the policy is for.
 */
function subjectOf(as: string | undefined, groups: string[] | undefined, via: 'cli' | 'sudo' | 'socket' | 'tcp', label: FieldLabel): PolicySubject {
  let subject: PolicySubject;
  if (as === undefined) subject = subjectFacts({ ...cliSubject(), ...(groups ? { groups: [] } : {}), via });
  else {
    const u = userOf(as, label('as'));
    subject = { ...subjectFromCredentials({ uid: u.uid, gid: u.gid, pid: process.pid }, via), username: u.name };
    if (groups) subject.groups = groupNames([u.gid]);
  }
  if (!groups) return subject;
  const named = groups.map((g) => (/^\d+$/.test(g) ? groupNames([Number(g)])[0] : g));
  return { ...subject, groups: [...new Set([...subject.groups, ...named])] };
}

/**
 * An image as a real request gives it to the policy (core/images.ts policyImage), from the
 * reference and digest given: before a pull there are no labels and no signature to check.
 */
function describedImage(reference: string, digest: string | undefined, label: FieldLabel): PolicyImage {
  let ref;
  try {
    ref = parseReference(reference);
  } catch (e) {
    throw invalidInput(`${label('image')} ${reference}: ${(e as Error).message}`);
  }
  const image = policyImage(ref, null);
  return digest ? { ...image, digest } : image;
}
