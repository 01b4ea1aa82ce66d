import { writeSync } from 'node:fs';
import type { DryRunResult } from '../core/programs.js';
import type { LinkView, PendingLinkView, PendingView, ProgramView } from '../core/view.js';

/**
 * Writes straight to a file descriptor. Touching process.stdout builds a stream (and loads
 * node:stream, ~2 ms) that a command printing one answer before it exits does not need.
 */
const pause = new Int32Array(new SharedArrayBuffer(4));

function writeAll(fd: number, text: string): void {
  let buf = Buffer.from(text);
  while (buf.length > 0) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // a non-blocking pipe that is full: wait for the reader
      if (code === 'EAGAIN') Atomics.wait(pause, 0, 0, 1);
      // the reader went away (bpfd list | head): nothing more to say
      else if (code === 'EPIPE') return;
      else throw e;
    }
  }
}

export const writeOut = (text: string): void => writeAll(1, text);
export const writeErr = (text: string): void => writeAll(2, text);

export function printJson(v: unknown): void {
  writeOut(JSON.stringify(v, null, 2) + '\n');
}

/** An interface as tables show it: name@netns when it is in another network namespace. */
export const ifaceLabel = (l: { iface: string; netns: string | null }) => (l.netns ? `${l.iface}@${l.netns.split('/').pop()}` : l.iface);

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** The link columns the tables share, each kind filling them from its own fields ('-' for none). */
export function linkCells(l: LinkView | PendingLinkView): { iface: string; priority: string; proceedOn: string; mode: string } {
  switch (l.kind) {
    case 'xdp':
      return { iface: ifaceLabel(l), priority: String(l.priority), proceedOn: l.proceed_on.join(','), mode: l.mode };
  }
}

export function programsTable(progs: ProgramView[]): string {
  const rows: string[][] = [];
  for (const p of progs) {
    const links = p.links.length ? p.links : [null];
    for (const l of links) {
      const c = l ? linkCells(l) : null;
      rows.push([String(p.id), p.name, p.type, c?.iface ?? '-', c?.priority ?? '-', l ? String(l.position) : '-', c?.proceedOn ?? '-', c?.mode ?? '-', l ? String(l.id) : '-', l?.kind ?? '-']);
    }
  }
  // KIND after LINK: the columns before it keep the places they had before links had kinds
  return table(['ID', 'NAME', 'TYPE', 'IFACE', 'PRIORITY', 'POSITION', 'PROCEED-ON', 'MODE', 'LINK', 'KIND'], rows);
}

export function pendingTable(pending: PendingView[]): string {
  if (pending.length === 0) return 'no programs wait to be restored\n';
  const rows = pending.flatMap((p) =>
    (p.links.length ? p.links : [null]).map((l) => {
      const c = l ? linkCells(l) : null;
      return [String(p.previous_id), p.name, p.type, c?.iface ?? '-', c?.priority ?? '-', c?.proceedOn ?? '-', c?.mode ?? '-', l ? String(l.id) : '-', l?.kind ?? '-', p.boot_id];
    }),
  );
  return table(['PREV-ID', 'NAME', 'TYPE', 'IFACE', 'PRIORITY', 'PROCEED-ON', 'MODE', 'LINK', 'KIND', 'BOOT'], rows) + 'restore them with: bpfd system restore\n';
}

export function programDetail(p: ProgramView): string {
  const src = 'path' in p.bytecode ? `${p.bytecode.path} (sha256 ${p.bytecode.sha256})` : `${p.bytecode.image} (${p.bytecode.digest})`;
  const kv: Array<[string, string]> = [
    ['ID', String(p.id)],
    ['Name', p.name],
    ['Type', p.type],
    ['Bytecode', src],
    ['Owner', `${p.owner.username} (uid ${p.owner.uid})`],
    ['Loaded at', p.loaded_at],
    ['Maps', `${p.maps.pin_path}${p.maps.names.length ? ` (${p.maps.names.join(', ')})` : ''}`],
    ['Map owner', p.maps.owner_id === null ? '-' : String(p.maps.owner_id)],
    ['Map used by', p.maps.used_by.join(', ')],
    ['Application', p.application ?? '-'],
    ['Metadata', Object.entries(p.metadata).map(([k, v]) => `${k}=${v}`).join(', ') || '-'],
  ];
  if (p.kernel) {
    kv.push(['Tag', p.kernel.tag], ['GPL compatible', String(p.kernel.gpl_compatible)], ['Kernel map ids', p.kernel.map_ids.join(', ') || '-']);
    kv.push(['Size', `${p.kernel.bytes_xlated} B translated, ${p.kernel.bytes_jited} B jited, ${p.kernel.verified_insns} insns verified`]);
  }
  const w = Math.max(...kv.map(([k]) => k.length));
  let out = kv.map(([k, v]) => `${(k + ':').padEnd(w + 1)} ${v}`).join('\n') + '\n';
  if (p.links.length) {
    out += '\nLinks:\n' + linksDetail(p.links).replace(/^(?=.)/gm, '  ');
    const counted = p.links.filter((l) => l.kind === 'xdp' && l.counters);
    if (counted.length) {
      out += '\nCounters (from the dispatcher, since the link joined):\n' + table(
        ['LINK', 'PACKETS', 'ABORTED', 'DROP', 'PASS', 'TX', 'REDIRECT'],
        counted.map((l) => {
          const c = l.counters!;
          return [String(l.id), String(c.packets), ...(['aborted', 'drop', 'pass', 'tx', 'redirect'] as const).map((a) => String(c.actions[a]))];
        }),
      ).replace(/^(?=.)/gm, '  ');
    }
  } else out += '\nLinks:    none (load only; attach with: bpfd attach ' + p.id + ' --iface IF)\n';
  return out;
}

/** get's table of links, one table per kind, each with the columns of its kind. */
function linksDetail(links: LinkView[]): string {
  const xdp = links.filter((l) => l.kind === 'xdp');
  return table(
    ['LINK', 'KIND', 'IFACE', 'NETNS', 'PRIORITY', 'POSITION', 'PROCEED-ON', 'MODE'],
    xdp.map((l) => [String(l.id), l.kind, l.iface, l.netns ?? '-', String(l.priority), String(l.position), l.proceed_on.join(','), l.mode]),
  );
}

export function dryRunText(r: DryRunResult): string {
  let out = `dry run: the policy would ${r.allow ? 'allow' : 'deny'} this load\n` + r.reasons.map((x) => `  ${x}\n`).join('');
  if (r.order.length) {
    out += '\nResulting order on the interface:\n' + table(
      ['POSITION', 'ID', 'NAME', 'PRIORITY', 'APPLICATION', ''],
      r.order.map((o) => [String(o.position), o.id === null ? '-' : String(o.id), o.name, String(o.priority), o.application ?? '-', o.new ? '<- new' : '']),
    ).replace(/^(?=.)/gm, '  ');
  }
  return out + 'nothing was loaded\n';
}
