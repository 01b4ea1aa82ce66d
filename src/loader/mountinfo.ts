import { readFileSync } from 'node:fs';

// Which paths are mount points, read from /proc/self/mountinfo: plain file reads, no koffi, so
// the read side (list, get) can check applications' bpffs mounts without loading libbpf.

export interface MountEntry {
  /** the mount point, unescaped */
  path: string;
  fstype: string;
  /** optional fields such as shared:N, master:N: how the mount propagates */
  propagation: string[];
}

// mountinfo escapes space, tab, newline and backslash as \ooo
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function mounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 6) continue;
    out.push({ path: unescape(fields[4]), fstype: fields[dash + 1], propagation: fields.slice(6, dash) });
  }
  return out;
}

/** The topmost mount at exactly this path, or null when the path is not a mount point. */
export function mountAt(path: string, all: MountEntry[] = mounts()): MountEntry | null {
  let found: MountEntry | null = null;
  for (const m of all) if (m.path === path) found = m;
  return found;
}
