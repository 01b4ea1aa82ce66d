import { invalidInput } from '../base/errors.js';

export const LABEL_PROGRAMS = 'io.ebpf.programs';
export const LABEL_MAPS = 'io.ebpf.maps';
export const LABEL_PROGRAM_TYPE = 'io.ebpf.program_type';
export const LABEL_FILENAME = 'io.ebpf.filename';
export const LABEL_FUNCTION = 'io.ebpf.bpf_function_name';

/** What a bytecode image says about itself, from its config's labels. */
export interface ImageLabels {
  /** function name -> program type */
  programs: Record<string, string>;
  /** map name -> map type */
  maps: Record<string, string>;
  /** the object's file name, from the older io.ebpf.filename */
  filename: string | null;
  /** every label of the config, as the policy sees it */
  all: Record<string, string>;
}

function jsonObjectLabel(labels: Record<string, string>, key: string): Record<string, string> {
  const raw = labels[key];
  if (raw === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw invalidInput(`the image label ${key} is not JSON: '${raw.slice(0, 80)}'`, [`it must be a JSON object serialised as a string, e.g. {"xdp_stats":"xdp"}`]);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw invalidInput(`the image label ${key} is not a JSON object of names to types: '${raw.slice(0, 80)}'`);
  }
  return v as Record<string, string>;
}

/** Reads the labels of an image config (OCI or Docker: config.Labels). */
export function parseLabels(config: Buffer): ImageLabels {
  let doc: { config?: { Labels?: Record<string, unknown> | null } };
  try {
    doc = JSON.parse(config.toString('utf8'));
  } catch {
    throw invalidInput('the image config is not JSON');
  }
  const all: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc?.config?.Labels ?? {})) if (typeof v === 'string') all[k] = v;
  const programs = jsonObjectLabel(all, LABEL_PROGRAMS);
  const maps = jsonObjectLabel(all, LABEL_MAPS);
  // older images name one program with three labels
  const fn = all[LABEL_FUNCTION];
  if (fn && !(fn in programs)) programs[fn] = all[LABEL_PROGRAM_TYPE] ?? 'unspec';
  return { programs, maps, filename: all[LABEL_FILENAME] ?? null, all };
}

/** Refuses a function the labels do not list (labels that list nothing allow any). */
export function checkListed(labels: ImageLabels, name: string, ref: string): void {
  const names = Object.keys(labels.programs);
  if (names.length && !names.includes(name)) {
    throw invalidInput(`function ${name} is not one of the programs image ${ref} lists in its labels`, [`programs in the image: ${names.map((n) => `${n} (${labels.programs[n]})`).join(', ')}`]);
  }
}
