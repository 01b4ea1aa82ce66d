import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** Two network namespaces joined by a veth pair: a sender (a) and a receiver (b). */
export interface VethPair {
  nsA: string;
  nsB: string;
  ifA: string;
  ifB: string;
  ipA: string;
  ipB: string;
  nsPathA: string;
  nsPathB: string;
  /** ping from a to b; true when the reply came back */
  ping(count?: number, timeoutS?: number): boolean;
  cleanup(): void;
}

let subnet = 0;

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Unique per process and call, so tests in parallel (and leftovers from a crashed run) never collide. */
export function uniqueName(prefix: string): string {
  return `${prefix}${randomBytes(3).toString('hex')}`;
}

export function makeVethPair(): VethPair {
  const tag = randomBytes(3).toString('hex');
  const nsA = `bpfdt-${tag}-a`;
  const nsB = `bpfdt-${tag}-b`;
  const ifA = `bta${tag}`;
  const ifB = `btb${tag}`;
  const third = (process.pid % 200) + 1;
  const fourth = ((subnet++ % 60) * 4) + 1;
  const ipA = `10.${third}.${fourth >> 8}.${fourth & 255}`;
  const ipB = `10.${third}.${fourth >> 8}.${(fourth & 255) + 1}`;
  const cleanup = () => {
    spawnSync('ip', ['netns', 'del', nsA]);
    spawnSync('ip', ['netns', 'del', nsB]);
  };
  try {
    ip('netns', 'add', nsA);
    ip('netns', 'add', nsB);
    // No IPv6 on the pair: router solicitations and MLD reports arrive at any moment, so a test
    // comparing two counters read one after the other would see packets land between the reads.
    for (const ns of [nsA, nsB]) {
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { stdio: 'ignore' });
    }
    ip('link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB);
    ip('-n', nsA, 'addr', 'add', `${ipA}/30`, 'dev', ifA);
    ip('-n', nsB, 'addr', 'add', `${ipB}/30`, 'dev', ifB);
    for (const [ns, dev] of [[nsA, ifA], [nsB, ifB], [nsA, 'lo'], [nsB, 'lo']]) ip('-n', ns, 'link', 'set', dev, 'up');
  } catch (e) {
    cleanup();
    throw e;
  }
  return {
    nsA, nsB, ifA, ifB, ipA, ipB,
    nsPathA: `/var/run/netns/${nsA}`,
    nsPathB: `/var/run/netns/${nsB}`,
    ping(count = 1, timeoutS = 1) {
      const r = spawnSync('ip', ['netns', 'exec', nsA, 'ping', '-n', '-q', '-c', String(count), '-i', '0.01', '-W', String(timeoutS), ipB], { encoding: 'utf8' });
      return r.status === 0;
    },
    cleanup,
  };
}
