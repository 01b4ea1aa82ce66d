import { statSync } from 'node:fs';
import path from 'node:path';
import { denied, invalidInput } from '../base/errors.js';
import type { Paths } from '../base/paths.js';
import type { Subject } from './context.js';

// Who a request is judged as, when the one asking is not the one who set bpfd up: a user who
// ran `sudo bpfd …`, or a client of the service. Such a caller must not bring their own rules:
// the variables that pick the policy, the data, the store or a test hook are refused, and the
// files the policy comes from must be root's alone (sshd's StrictModes).

/** Variables a delegated caller could use to choose their own rules, store or faults. */
export const DELEGATION_REFUSED_ENV = [
  'BPFD_POLICY',
  'BPFD_POLICY_DATA',
  'BPFD_STATE_DIR',
  'BPFD_RUNTIME_DIR',
  'BPFD_TEST_HOOK',
  // a boot id of one's own makes every record look like an earlier boot's; a fuel budget or a
  // log size of one's own changes what the policy decides or what the audit keeps
  'BPFD_BOOT_ID',
  'BPFD_POLICY_FUEL',
  'BPFD_DECISION_LOG_MAX',
  // keys of one's own would make one's own signatures count; a registries file of one's own
  // allows plain HTTP to any host; a layer cap of one's own lifts a limit the policy relies on
  'BPFD_KEYS_DIR',
  'BPFD_REGISTRIES_CONFIG',
  'BPFD_MAX_LAYER_BYTES',
] as const;

export interface SudoCaller {
  uid: number;
  gid: number;
  username: string;
}

/**
 * The user behind `sudo bpfd …`: the real uid is 0 and sudo's own SUDO_UID/SUDO_GID/SUDO_USER
 * are set. Root setting them by hand only restricts itself, so they need no other proof.
 */
export function sudoCaller(env: NodeJS.ProcessEnv = process.env, realUid = process.getuid?.()): SudoCaller | null {
  if (realUid !== 0) return null;
  const { SUDO_UID: uid, SUDO_GID: gid, SUDO_USER: username } = env;
  if (!uid || !gid || !username || !/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return null;
  return { uid: Number(uid), gid: Number(gid), username };
}

/** Throws, naming each variable, when the environment tries to choose policy, store or faults. */
export function refuseDelegatedEnv(env: NodeJS.ProcessEnv, where: 'sudo' | 'service'): void {
  const set = DELEGATION_REFUSED_ENV.filter((k) => env[k] !== undefined);
  if (set.length === 0) return;
  const why =
    where === 'sudo'
      ? 'under sudo bpfd judges the user who ran sudo, and that user must not choose the policy, its data, the store or a test hook'
      : 'the service judges other users, so what it enforces comes from its command line (root), never from an environment';
  const fix =
    where === 'sudo'
      ? 'run sudo without -E (and without SETENV or env_keep for BPFD_* in sudoers); an administrator changes the rules in /etc/bpfd/'
      : 'unset them and give the service --runtime-dir, --state-dir, --policy or --policy-data instead';
  throw invalidInput(`refusing ${set.join(', ')} from the environment: ${why}`, [fix]);
}

/** The subject of a sudo caller: their own uid and groups, arriving `via: sudo`. */
export async function sudoSubject(c: SudoCaller): Promise<Subject> {
  const { groupsOf } = await import('../loader/peercred.js');
  return { uid: c.uid, gid: c.gid, groups: groupsOf(c.username, c.gid), username: c.username, pid: process.pid, via: 'sudo' };
}

/** A service client on the unix socket, from its peer credentials and the user database. */
export async function socketSubject(cred: { pid: number; uid: number; gid: number }): Promise<Subject> {
  const { accountOf, groupsOf } = await import('../loader/peercred.js');
  const account = accountOf(cred.uid);
  const username = account?.username ?? String(cred.uid);
  return { uid: cred.uid, gid: cred.gid, groups: account ? groupsOf(username, account.gid).concat(cred.gid) : [cred.gid], username, pid: cred.pid, via: 'socket' };
}

/** A TCP client: nothing says who it is, so it is nobody the policy knows by name. */
export const TCP_SUBJECT: Subject = Object.freeze({ uid: -1, gid: -1, groups: [], username: 'anonymous', pid: 0, via: 'tcp' as const });

/** Whether the subject is judged by rules someone else chose (sudo, the service). */
export const isDelegated = (s: Subject) => s.via !== 'cli';

/**
 * The policy module and data file must be root's and writable by root alone, and so must every
 * directory above them (a directory others may write lets them swap the file). A sticky
 * root-owned directory such as /tmp is accepted: others cannot rename or remove root's entries in
 * it. A data file that does not exist is the empty document and has nothing to check.
 */
export function checkPolicyFiles(paths: Pick<Paths, 'policy' | 'policyData'>): void {
  for (const [what, file, optional] of [['policy module', paths.policy, false], ['policy data', paths.policyData, true]] as const) {
    const problem = unsafePath(path.resolve(file), optional);
    if (problem) {
      throw denied(`denied: the policy cannot be trusted: ${what} ${problem}`, [
        'policy modules, data files and the directories above them must be owned by root and not writable by group or others (chown root:root, chmod go-w)',
      ]);
    }
  }
}

function unsafePath(file: string, optional: boolean): string | null {
  let st;
  try {
    st = statSync(file);
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return null; // unreadable files are the policy engine's to report
  }
  if (st.uid !== 0) return `${file} is owned by uid ${st.uid}, not root`;
  if (st.mode & 0o022) return `${file} is writable by ${st.mode & 0o002 ? 'others' : 'its group'} (mode ${(st.mode & 0o777).toString(8)})`;
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    let d;
    try {
      d = statSync(dir);
    } catch {
      // a file whose directory does not exist is in the executable's embedded file system
      // (Bun's /$bunfs: the shipped policy), which is as trusted as the executable itself
      return null;
    }
    const sticky = (d.mode & 0o1000) !== 0;
    if (d.uid !== 0) return `${file} is in ${dir}, owned by uid ${d.uid}, not root`;
    if (d.mode & 0o022 && !sticky) return `${file} is in ${dir}, writable by ${d.mode & 0o002 ? 'others' : 'its group'} (mode ${(d.mode & 0o777).toString(8)})`;
    if (dir === '/') return null;
  }
}
