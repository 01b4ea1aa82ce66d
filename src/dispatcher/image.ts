import { failed } from '../base/errors.js';
import { isGplCompatible } from '../loader/elf.js';
import {
  BPF_FUNC_tail_call,
  BPF_PSEUDO_BTF_ID,
  BPF_PSEUDO_FUNC,
  BPF_PSEUDO_MAP_FD,
  BPF_PSEUDO_MAP_IDX,
  BPF_PSEUDO_MAP_IDX_VALUE,
  BPF_PSEUDO_MAP_VALUE,
  decodeInsns,
  encodeInsns,
  isHelperCall,
  isKfuncCall,
  isLdImm64,
  isPseudoCall,
  relTarget,
} from '../base/insn.js';

/**
 * A member program as the dispatcher needs it: the instructions libbpf handed to the kernel
 * (subprograms already appended, CO-RE already applied, so valid for this kernel only), with
 * every map reference turned into the pin of that map instead of a process-local fd. Any later
 * process rebuilds a dispatcher from this and the pins alone.
 */
export interface RelocatableImage {
  /** instructions with map fd immediates zeroed (they are patched from `maps` at compose time) */
  insns: Buffer;
  /** each ld_imm64 that names a map: instruction index, the map's pin, and whether it is a
   * direct value address (BPF_PSEUDO_MAP_VALUE; the offset stays in the second slot) */
  maps: Array<{ insn: number; pin: string; value: boolean }>;
  license: string;
  gplCompatible: boolean;
  frags: boolean;
  /** instruction indexes where a function starts: 0 and every pseudo call / func target */
  funcStarts: number[];
  /** calls bpf_tail_call: must stay a called subprogram so the tail call returns to the chain */
  tailCalls: boolean;
  /** passes a function pointer (bpf_loop and friends): needs BTF func_info */
  callbacks: boolean;
  /** vmlinux BTF ids of kfuncs it calls */
  kfuncs: number[];
}

export interface ImageMeta {
  license: string;
  frags: boolean;
}

/**
 * Builds the image right after libbpf loaded the member (its map fds are still open). Refuses,
 * with the reason, any reference the dispatcher could not reproduce in another process.
 */
export function extractImage(insnsBuf: Buffer, maps: Array<{ fd: number; pin: string }>, meta: ImageMeta): RelocatableImage {
  const insns = decodeInsns(insnsBuf);
  if (insns.length === 0) throw failed('cannot compose an empty program into the XDP dispatcher');
  const byFd = new Map(maps.map((m) => [m.fd, m.pin]));
  const refs: RelocatableImage['maps'] = [];
  const starts = new Set<number>([0]);
  const kfuncs = new Set<number>();
  let tailCalls = false;
  let callbacks = false;
  const refuse = (pc: number, why: string) =>
    failed(`this program cannot be composed into the XDP dispatcher: ${why} (instruction ${pc})`, [
      'bpfd runs several XDP programs on one interface by composing them into one program; this one has to run alone',
    ]);

  for (let pc = 0; pc < insns.length; pc++) {
    const i = insns[pc];
    if (isLdImm64(i)) {
      if (pc + 1 >= insns.length) throw refuse(pc, 'truncated 64-bit load');
      const next = insns[pc + 1];
      switch (i.src) {
        case 0:
          break;
        case BPF_PSEUDO_MAP_FD:
        case BPF_PSEUDO_MAP_VALUE: {
          const pin = byFd.get(i.imm);
          if (pin === undefined) throw refuse(pc, `it references a map (fd ${i.imm}) that has no pin`);
          refs.push({ insn: pc, pin, value: i.src === BPF_PSEUDO_MAP_VALUE });
          i.imm = 0;
          break;
        }
        case BPF_PSEUDO_BTF_ID:
          // A kernel variable (ksym): vmlinux ids are stable while the kernel runs; a module's
          // BTF would need its fd, which no later process has.
          if (next.imm !== 0) throw refuse(pc, 'it references a variable of a kernel module (module BTF)');
          break;
        case BPF_PSEUDO_FUNC:
          callbacks = true;
          starts.add(pc + 1 + i.imm);
          break;
        case BPF_PSEUDO_MAP_IDX:
        case BPF_PSEUDO_MAP_IDX_VALUE:
          throw refuse(pc, 'it references maps through fd_array indexes');
        default:
          throw refuse(pc, `unknown 64-bit load kind ${i.src}`);
      }
      pc++;
      continue;
    }
    if (isPseudoCall(i)) starts.add(pc + 1 + i.imm);
    else if (isKfuncCall(i)) {
      if (i.off !== 0) throw refuse(pc, `it calls a kfunc of a kernel module (BTF id ${i.imm})`);
      kfuncs.add(i.imm);
    } else if (isHelperCall(i, BPF_FUNC_tail_call)) tailCalls = true;
    const rel = relTarget(i, pc);
    if (rel && (rel.target < 0 || rel.target >= insns.length)) throw refuse(pc, 'a jump leaves the program');
  }
  return {
    insns: encodeInsns(insns),
    maps: refs,
    license: meta.license,
    gplCompatible: isGplCompatible(meta.license),
    frags: meta.frags,
    funcStarts: [...starts].sort((a, b) => a - b),
    tailCalls,
    callbacks,
    kfuncs: [...kfuncs].sort((a, b) => a - b),
  };
}

// Stored form: magic + version, JSON header length, JSON header, raw instructions. The header
// stays readable with any JSON tool; the instructions stay bit-exact.
const MAGIC = Buffer.from('BPFDIMG1');

export function encodeImage(img: RelocatableImage): Buffer {
  const { insns, ...rest } = img;
  const header = Buffer.from(JSON.stringify(rest));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return Buffer.concat([MAGIC, len, header, insns]);
}

export function decodeImage(buf: Buffer): RelocatableImage {
  if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC)) throw failed('stored dispatcher image is not in a format this bpfd knows');
  const hlen = buf.readUInt32LE(8);
  const rest = JSON.parse(buf.toString('utf8', 12, 12 + hlen)) as Omit<RelocatableImage, 'insns'>;
  return { ...rest, insns: Buffer.from(buf.subarray(12 + hlen)) };
}
