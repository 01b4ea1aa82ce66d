/** Records persisted in LMDB. Field names follow the CLI's JSON (shared/CLI.md). */

export type ProgramType = 'xdp' | 'tc' | 'tcx' | 'tracepoint' | 'uprobe' | 'kprobe' | 'unspec';

export type XdpAction = 'aborted' | 'drop' | 'pass' | 'tx' | 'redirect' | 'dispatcher_return';

export type BytecodeSource = { path: string; sha256: string } | { image: string; digest: string };

export interface ProgramRecord {
  id: number; // kernel program id
  name: string; // function name
  type: ProgramType;
  section: string;
  bytecode: BytecodeSource;
  owner: { uid: number; username: string };
  metadata: Record<string, string>;
  maps: { pin_path: string; owner_id: number | null };
  /** names of the maps pinned under maps.pin_path */
  map_names: string[];
  globals: Record<string, string>; // NAME -> hex
  application: string | null;
  license: string;
  tag: string; // kernel tag, hex: identifies the same kernel object across processes
  loaded_at: string;
  persist: boolean;
  /** boot the program was loaded in (/proc/sys/kernel/random/boot_id) */
  boot_id: string;
  /** the PendingRestore key it was restored from: a restore cut short resumes instead of loading it twice */
  restored_from?: string;
  /** bytecode facts the policy saw at load, kept for later decisions about this program */
  facts?: {
    insn_count: number;
    helpers: string[];
    kfuncs: string[];
    maps: Array<{ name: string; type: string; key_size: number; value_size: number; max_entries: number }>;
  };
}

/** What every link has, whatever it attaches to. */
export interface LinkBase {
  id: number; // bpfd-assigned, stable
  prog_id: number;
  /** what the link attaches to; the fields of that kind follow (only XDP so far) */
  kind: LinkKind;
  /** monotonically increasing: ties in priority keep attach order */
  seq: number;
  created_at: string;
}

export type LinkKind = 'xdp';

/** An XDP program's place in an interface's dispatcher. */
export interface XdpLinkRecord extends LinkBase {
  kind: 'xdp';
  iface: string;
  ifindex: number;
  netns: string | null;
  /** inode of the netns, so two interfaces of the same name in different netns never mix */
  netns_ino: number;
  priority: number;
  proceed_on: XdpAction[];
  mode: 'skb' | 'drv';
}

/** A link of any kind: narrow on `kind` before reading kind-specific fields. */
export type LinkRecord = XdpLinkRecord;

/**
 * A program loaded with --persist in an earlier boot, waiting for `bpfd system restore`. Kept
 * apart from `programs`, which is keyed by kernel id: ids start again after a reboot, so an old
 * record could otherwise collide with a program loaded in this boot.
 */
export interface PendingRestore {
  /** `<boot_id>/<id>`: unique across boots, and the same again if a move is repeated */
  key: string;
  program: ProgramRecord;
  /** its links as they were, in attach order; restore keeps their ids and order */
  links: LinkRecord[];
}
