import { readFileSync } from 'node:fs';

// The account databases (/etc/passwd, /etc/group), read directly: os.userInfo() is not reliable
// across runtimes (Bun 1.4.5 answers "unknown" for every uid) and the policy, the decision log
// and the owner of every record name people by these names.

/** Names for gids; policies match group names, and a gid without one keeps its number. */
export function groupNames(gids: number[]): string[] {
  const byGid = new Map(readGroupFile().map((g) => [g.gid, g.name]));
  return [...new Set(gids.map((gid) => byGid.get(gid) ?? String(gid)))];
}

export function readGroupFile(): Array<{ name: string; gid: number; members: string[] }> {
  return readColonFile('/etc/group').map((f) => ({ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}

export function passwdName(uid: number): string | undefined {
  return readColonFile('/etc/passwd').find((f) => Number(f[2]) === uid)?.[0];
}

/** A user of /etc/passwd by name or uid: `bpfd policy eval --as` stands in for them. */
export function passwdEntry(user: { name: string } | { uid: number }): { name: string; uid: number; gid: number } | undefined {
  const f = readColonFile('/etc/passwd').find((e) => ('name' in user ? e[0] === user.name : Number(e[2]) === user.uid));
  return f ? { name: f[0], uid: Number(f[2]), gid: Number(f[3]) } : undefined;
}

function readColonFile(file: string): string[][] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    // no file (minimal containers): callers fall back to numbers
    return [];
  }
}
