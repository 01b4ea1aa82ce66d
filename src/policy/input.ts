/**
 * The policy's input contract, as TypeScript. policies/input.schema.json is the same contract for
 * policy authors; policies/README.md explains each field. Field names are snake_case because they
 * are what Rego sees.
 */

export type PolicyAction = 'load' | 'attach' | 'detach' | 'unload' | 'pull' | 'share';

export interface PolicySubject {
  uid: number;
  gid: number;
  /** group names (a gid without a name in /etc/group appears as its number, as a string) */
  groups: string[];
  username: string;
  pid: number;
  /** how the request arrived: a local command, or the service socket (peer credentials) */
  via: 'cli' | 'socket' | 'sudo' | 'tcp';
}

export interface PolicyMap {
  name: string;
  /** libbpf's name for the map type, e.g. "array", "hash", "percpu_array", "ringbuf" */
  type: string;
  key_size: number;
  value_size: number;
  max_entries: number;
}

/** Facts about the program, read from its bytecode before anything reaches the kernel. */
export interface PolicyProgram {
  name: string;
  type: string;
  section: string;
  license: string;
  /** sha256 of the object file, for programs loaded from a file */
  sha256?: string;
  /** image reference and manifest digest, for programs pulled from a registry */
  image?: string;
  digest?: string;
  /** instruction slots, as the kernel counts them (ld_imm64 is two) */
  insn_count: number;
  /** helper names, e.g. "bpf_map_lookup_elem", sorted, each once */
  helpers: string[];
  /** kfunc names, sorted, each once */
  kfuncs: string[];
  maps: PolicyMap[];
  /**
   * Programs bpfd loads with this one as tail-call targets (named in the object's prog arrays),
   * each with its own facts; insn_count, helpers and kfuncs above already include theirs.
   */
  tail_calls?: PolicyTailCall[];
}

export interface PolicyTailCall {
  name: string;
  section: string;
  insn_count: number;
  helpers: string[];
  kfuncs: string[];
}

/** The program whose maps a load shares (--map-owner-id), and who it belongs to. */
export interface PolicyMapOwner {
  id: number;
  name: string;
  owner: { uid: number; username: string };
  application: string | null;
  /** the maps shared, as pinned: every map of that program */
  maps: string[];
}

/** Only `image` is known when pulling: the program facts come after the pull. */
export type PolicyPullProgram = Partial<PolicyProgram> & { image: string };

export interface PolicyAttach {
  iface: string;
  /** netns file path, or null for the caller's namespace */
  netns: string | null;
  priority: number;
  proceed_on: string[];
}

/** A program already on the interface the request attaches to. */
export interface PolicyExisting {
  name: string;
  priority: number;
  owner: { uid: number; username: string };
  application: string | null;
  metadata: Record<string, string>;
}

/** Facts about an OCI image, for load from an image and pull. */
export interface PolicyImage {
  /** the reference as given, canonical (registry/repository:tag or @digest) */
  reference: string;
  registry: string;
  repository: string;
  /** manifest digest; null for a pull by tag, decided before anything is fetched */
  digest: string | null;
  /** the config's labels (io.ebpf.programs, io.ebpf.maps, …); {} before a pull */
  labels: Record<string, string>;
  /** cosign verification against the administrator's keys; absent before a pull */
  signature?: { verified: boolean; key: string | null; fingerprint: string | null; reason: string | null };
}

export interface PolicyInput {
  subject: PolicySubject;
  /** the image the program comes from (load image, pull) */
  image?: PolicyImage;
  action: PolicyAction;
  program?: PolicyProgram | PolicyPullProgram;
  attach?: PolicyAttach;
  /** the programs already on attach.iface, in their current order */
  existing?: PolicyExisting[];
  /** the recorded owner of the program acted on (attach of a loaded program, detach, unload) */
  owner?: { uid: number; username: string };
  application?: string | null;
  metadata?: Record<string, string>;
  /** a load with --map-owner-id: the program whose maps (prog arrays included) it will use */
  map_owner?: PolicyMapOwner;
  /** action share: where the maps go, to whom, with which mode */
  share?: PolicyShare;
}

/** A share into an application's bpffs (bpfd bpffs share). */
export interface PolicyShare {
  /** the mount's path */
  path: string;
  /** the mount's owner, who gets the pins */
  owner: { uid: number; gid: number };
  /** permission bits of the pins, as an octal string ("0660") */
  mode: string;
  /** the maps named, or null for all of them */
  maps: string[] | null;
  /** the application the mount was created for */
  mount_application: string | null;
}

/** What a policy must return. Anything else is treated as a deny. */
export interface PolicyResult {
  allow: boolean;
  reasons: string[];
}
