// The text of proto/bpfman/v1/bpfman.proto, embedded so that the compiled executable needs no
// file beside it (the service and the CLI client both encode with it). test/unit/api-proto.test.ts
// fails when the two differ.
export const BPFMAN_PROTO = `// bpfman.v1: the gRPC interface bpfd serves (bpfd system service), wire-compatible with
// bpfman's so that clients written for bpfman work unchanged. Written from the wire facts
// (field numbers and types); src/base/bpfman-proto.ts embeds this exact text in the executable.
syntax = "proto3";

package bpfman.v1;

service Bpfman {
  rpc Load(LoadRequest) returns (LoadResponse);
  rpc Unload(UnloadRequest) returns (UnloadResponse);
  rpc Attach(AttachRequest) returns (AttachResponse);
  rpc Detach(DetachRequest) returns (DetachResponse);
  rpc List(ListRequest) returns (ListResponse);
  rpc PullBytecode(PullBytecodeRequest) returns (PullBytecodeResponse);
  rpc Get(GetRequest) returns (GetResponse);
}

enum BpfmanProgramType {
  XDP = 0;
  TC = 1;
  TRACEPOINT = 2;
  KPROBE = 3;
  UPROBE = 4;
  FENTRY = 5;
  FEXIT = 6;
  TCX = 7;
  LSM = 8;
}

message BytecodeImage {
  string url = 1;
  // 0 Always, 1 IfNotPresent, 2 Never
  int32 image_pull_policy = 2;
  optional string username = 3;
  optional string password = 4;
}

message BytecodeLocation {
  oneof location {
    BytecodeImage image = 2;
    string file = 3;
  }
}

message KernelProgramInfo {
  uint32 id = 1;
  string name = 2;
  uint32 program_type = 3;
  string loaded_at = 4;
  string tag = 5;
  bool gpl_compatible = 6;
  repeated uint32 map_ids = 7;
  uint32 btf_id = 8;
  uint32 bytes_xlated = 9;
  bool jited = 10;
  uint32 bytes_jited = 11;
  uint32 bytes_memlock = 12;
  uint32 verified_insns = 13;
}

message ProgramInfo {
  string name = 1;
  BytecodeLocation bytecode = 2;
  repeated uint32 links = 3;
  map<string, bytes> global_data = 4;
  optional uint32 map_owner_id = 5;
  string map_pin_path = 6;
  repeated string map_used_by = 7;
  map<string, string> metadata = 8;
}

message XDPAttachInfo {
  int32 priority = 1;
  string iface = 2;
  // output only
  int32 position = 3;
  repeated int32 proceed_on = 4;
  optional string netns = 5;
  map<string, string> metadata = 6;
}

message TCAttachInfo {
  int32 priority = 1;
  string iface = 2;
  int32 position = 3;
  string direction = 4;
  repeated int32 proceed_on = 5;
  optional string netns = 6;
  map<string, string> metadata = 7;
}

message TCXAttachInfo {
  int32 priority = 1;
  string iface = 2;
  int32 position = 3;
  string direction = 4;
  optional string netns = 5;
  map<string, string> metadata = 6;
}

message TracepointAttachInfo {
  string tracepoint = 1;
  map<string, string> metadata = 2;
}

message KprobeAttachInfo {
  string fn_name = 1;
  uint64 offset = 2;
  optional int32 container_pid = 3;
  map<string, string> metadata = 4;
}

message UprobeAttachInfo {
  optional string fn_name = 1;
  uint64 offset = 2;
  string target = 3;
  optional int32 pid = 4;
  optional int32 container_pid = 5;
  map<string, string> metadata = 6;
}

message FentryAttachInfo {
  map<string, string> metadata = 1;
}

message FexitAttachInfo {
  map<string, string> metadata = 1;
}

message LsmAttachInfo {
  map<string, string> metadata = 1;
}

message AttachInfo {
  oneof info {
    XDPAttachInfo xdp_attach_info = 1;
    TCAttachInfo tc_attach_info = 2;
    TracepointAttachInfo tracepoint_attach_info = 3;
    KprobeAttachInfo kprobe_attach_info = 4;
    UprobeAttachInfo uprobe_attach_info = 5;
    TCXAttachInfo tcx_attach_info = 6;
    FentryAttachInfo fentry_attach_info = 7;
    FexitAttachInfo fexit_attach_info = 8;
    LsmAttachInfo lsm_attach_info = 9;
  }
}

message FentryLoadInfo {
  string fn_name = 1;
}

message FexitLoadInfo {
  string fn_name = 1;
}

message LsmLoadInfo {
  string hook_name = 1;
}

message ProgSpecificInfo {
  oneof info {
    FentryLoadInfo fentry_load_info = 1;
    FexitLoadInfo fexit_load_info = 2;
    LsmLoadInfo lsm_load_info = 3;
  }
}

message LoadInfo {
  string name = 1;
  BpfmanProgramType program_type = 2;
  optional ProgSpecificInfo info = 3;
}

message LoadRequest {
  BytecodeLocation bytecode = 1;
  map<string, string> metadata = 5;
  map<string, bytes> global_data = 6;
  optional string uuid = 7;
  optional uint32 map_owner_id = 8;
  repeated LoadInfo info = 9;
}

message LoadResponseInfo {
  ProgramInfo info = 1;
  KernelProgramInfo kernel_info = 2;
}

message LoadResponse {
  repeated LoadResponseInfo programs = 1;
}

message UnloadRequest {
  uint32 id = 1;
}

message UnloadResponse {}

message AttachRequest {
  uint32 id = 1;
  AttachInfo attach = 2;
}

message AttachResponse {
  uint32 link_id = 1;
}

message DetachRequest {
  uint32 link_id = 1;
}

message DetachResponse {}

message ListRequest {
  optional uint32 program_type = 1;
  optional bool bpfman_programs_only = 2;
  map<string, string> match_metadata = 3;
}

message ListResponse {
  message ListResult {
    optional ProgramInfo info = 1;
    KernelProgramInfo kernel_info = 2;
  }
  repeated ListResult results = 3;
}

message PullBytecodeRequest {
  BytecodeImage image = 1;
}

message PullBytecodeResponse {}

message GetRequest {
  uint32 id = 1;
}

message GetResponse {
  optional ProgramInfo info = 1;
  KernelProgramInfo kernel_info = 2;
}
`;

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
