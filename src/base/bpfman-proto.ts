import { readFileSync } from 'node:fs';
import path from 'node:path';

// proto/bpfman/v1/bpfman.proto, which the service and the CLI client both encode with. The
// executable carries it inside (src/cli/entry.ts registers where); run from the sources (tests
// import build/src/...) it is the repo's file, three levels up.
let embeddedProto: string | null = null;
let protoText: string | null = null;

export function useEmbeddedProto(file: string): void {
  embeddedProto = file;
}

/** The text of bpfman.proto, read once per process. */
export function bpfmanProto(): string {
  const home = process.env.BPFD_HOME ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
  return (protoText ??= readFileSync(embeddedProto ?? path.join(home, 'proto', 'bpfman', 'v1', 'bpfman.proto'), 'utf8'));
}

/**
 * bpfd's own answer, beside bpfman's: the views `bpfd` prints (JSON), appended to a response as
 * this field number, which no bpfman.v1 message uses, so bpfman clients skip it as an unknown
 * field. Sent only to a caller that asks with the BPFD_VIEW_HEADER request header: the bpfd
 * command line as a client prints exactly what it prints in-process.
 */
export const BPFD_VIEW_FIELD = 15000;
export const BPFD_VIEW_HEADER = "bpfd-view";

/**
 * bpfd's extensions of a request, which bpfman.v1's messages have no field for: a JSON object in
 * this request header (Load: persist, application, dry_run, attach; Attach: mode). A bpfman
 * client never sends it and gets bpfman's behaviour; the bpfd command line as a client sends it
 * so that its options do through the service what they do in-process.
 */
export const BPFD_OPTIONS_HEADER = "bpfd-options";

/** Image pull policies by name, in the order of BytecodeImage.image_pull_policy (0 Always, 1 IfNotPresent, 2 Never). */
export const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];
