package bpfd.authz_test

import rego.v1

import data.bpfd.authz

# A data document like policies/examples/netops.json, inlined so the tests do
# not depend on the example staying as it is.
grants := [
	{
		"name": "netops",
		"groups": ["netops"],
		"actions": ["load", "attach", "detach", "unload", "pull"],
		"program_types": ["xdp"],
		"interfaces": ["eth*", "veth*"],
		"priority": {"min": 100, "max": 899},
		"max_insns": 4096,
		"images": ["registry.example.com/net/*"],
	},
	{"name": "leads", "groups": ["leads"], "manage_others": true},
	{"uids": [2001], "users": ["bot"], "actions": ["load"]},
]

bands := [{"min": 0, "max": 99, "applications": ["firewall"], "groups": ["secops"], "uids": [3000], "description": "early drop"}]

ordering := [{"before": "firewall", "after": "monitoring"}]

forbidden := {"helpers": {"contractors": ["bpf_redirect*"]}, "kfuncs": {"contractors": ["bpf_kfunc_*"]}}

licenses := {"allowed": ["GPL", "Dual BSD/GPL"]}

alice := {"uid": 1001, "gid": 1001, "groups": ["netops"], "username": "alice", "pid": 10, "via": "cli"}

root := {"uid": 0, "gid": 0, "groups": ["root"], "username": "root", "pid": 1, "via": "cli"}

program := {
	"name": "xdp_count", "type": "xdp", "section": "xdp", "license": "GPL",
	"sha256": "00", "insn_count": 15, "helpers": ["bpf_map_lookup_elem"], "kfuncs": [], "maps": [],
}

load_input := {
	"subject": alice,
	"action": "load",
	"program": program,
	"attach": {"iface": "eth0", "netns": null, "priority": 150, "proceed_on": ["pass"]},
	"existing": [],
	"application": "ratelimit",
	"metadata": {},
}

decide(inp) := d if {
	d := authz.decision with input as inp
		with data.grants as grants
		with data.reserved_priorities as bands
		with data.ordering as ordering
		with data.forbidden as forbidden
		with data.licenses as licenses
}

# object.union merges nested objects; put replaces a key outright.
put(obj, key, value) := object.union(object.remove(obj, [key]), {key: value})

denied_with(inp, fragment) if {
	d := decide(inp)
	d.allow == false
	some r in d.reasons
	contains(r, fragment)
}

test_granted_load_is_allowed if {
	d := decide(load_input)
	d.allow == true
	d.reasons == ["allowed by grant \"netops\""]
}

test_root_is_allowed_without_grants if {
	d := authz.decision with input as object.union(load_input, {"subject": root})
	d == {"allow": true, "reasons": ["uid 0 (root) is allowed by default"]}
}

test_root_can_be_disabled if {
	d := authz.decision with input as object.union(load_input, {"subject": root}) with data.root_allowed as false
	d.allow == false
	startswith(d.reasons[0], "uid 0 (root) has no grant")
}

test_user_without_grant_is_denied if {
	stranger := object.union(alice, {"groups": ["users"]})
	denied_with(object.union(load_input, {"subject": stranger}), "uid 1001 (alice) has no grant")
}

test_grant_by_uid_and_by_username if {
	decide(object.union(load_input, {"subject": {"uid": 2001, "groups": [], "username": "x"}})).allow
	decide(object.union(load_input, {"subject": {"uid": 5, "groups": [], "username": "bot"}})).allow
}

test_subject_without_username_is_labelled_unknown if {
	denied_with(put(load_input, "subject", {"uid": 7, "groups": []}), "uid 7 (unknown) has no grant")
}

test_action_not_granted if {
	bot := {"uid": 2001, "groups": [], "username": "bot"}
	denied_with(object.union(load_input, {"subject": bot, "action": "unload"}), "grant \"#2\": action \"unload\" is not granted")
}

test_program_type_not_granted if {
	tc := object.union(program, {"type": "tc"})
	denied_with(object.union(load_input, {"program": tc}), "program type \"tc\" is not granted (granted: xdp)")
}

test_program_without_type_is_unknown if {
	untyped := object.remove(program, ["type"])
	denied_with(put(load_input, "program", untyped), "program type \"unknown\"")
}

test_interface_not_granted if {
	inp := object.union(load_input, {"attach": {"iface": "lo", "priority": 150}})
	denied_with(inp, "interface \"lo\" is not granted (granted: eth*, veth*)")
}

test_interface_glob_matches if {
	decide(object.union(load_input, {"attach": {"iface": "veth-lab3", "priority": 150}})).allow
}

test_priority_outside_grant if {
	inp := object.union(load_input, {"attach": {"iface": "eth0", "priority": 950}})
	denied_with(inp, "priority 950 is outside the granted range 100..899")
}

test_load_without_attach_skips_attach_rules if {
	decide(object.remove(load_input, ["attach"])).allow
}

test_too_many_instructions if {
	big := object.union(program, {"insn_count": 5000})
	denied_with(object.union(load_input, {"program": big}), "program has 5000 instructions, the grant allows at most 4096")
}

test_pull_of_granted_image if {
	inp := {"subject": alice, "action": "pull", "program": {"image": "registry.example.com/net/xdp:1"}}
	decide(inp).allow
}

test_pull_of_other_image if {
	inp := {"subject": alice, "action": "pull", "program": {"image": "evil.example.org/x:1"}}
	denied_with(inp, "image \"evil.example.org/x:1\" is not granted")
}

test_pull_without_image if {
	denied_with({"subject": alice, "action": "pull"}, "image \"\" is not granted")
}

test_detach_of_own_program if {
	decide({"subject": alice, "action": "detach", "program": program, "owner": {"uid": 1001}}).allow
}

test_detach_of_someone_elses_program if {
	inp := {"subject": alice, "action": "detach", "program": program, "owner": {"uid": 1002}}
	denied_with(inp, "the program belongs to uid 1002")
}

# Attaching a loaded program is checked like a load (reserved bands, forbidden
# helpers) and like an action on someone's program (manage_others).
test_attach_of_a_loaded_program if {
	inp := object.union(load_input, {"action": "attach", "owner": {"uid": 1001}})
	decide(inp).allow
	denied_with(object.union(inp, {"owner": {"uid": 1002}}), "the program belongs to uid 1002")
	denied_with(object.union(inp, {"attach": {"priority": 5}}), "reserved for application \"firewall\"")
}

test_manage_others_allows_it if {
	lead := object.union(alice, {"groups": ["leads"]})
	decide({"subject": lead, "action": "unload", "program": program, "owner": {"uid": 1002}}).allow
}

test_reserved_band_denies_others if {
	inp := object.union(load_input, {"subject": root, "attach": {"iface": "eth0", "priority": 5}})
	denied_with(inp, "priority 5 is in the band 0..99 reserved for application \"firewall\", group \"secops\", uid \"3000\" (early drop)")
}

test_reserved_band_admits_application_group_and_uid if {
	at5 := {"iface": "eth0", "priority": 5}
	decide(object.union(load_input, {"subject": root, "attach": at5, "application": "firewall"})).allow
	decide(object.union(load_input, {"subject": object.union(root, {"groups": ["secops"]}), "attach": at5})).allow
	decide(object.union(load_input, {"subject": object.union(root, {"uid": 3000}), "attach": at5})).allow == false # uid 3000 has no grant
	denied_with(object.union(load_input, {"subject": object.union(root, {"uid": 3000}), "attach": at5}), "has no grant")
	not denied_with(object.union(load_input, {"subject": object.union(root, {"uid": 3000}), "attach": at5}), "reserved")
}

test_band_without_description if {
	d := authz.decision with input as object.union(load_input, {"subject": root, "attach": {"iface": "eth0", "priority": 5}})
		with data.reserved_priorities as [{"max": 9, "applications": ["fw"]}]
	d.reasons == ["priority 5 is in the band 0..9 reserved for application \"fw\""]
}

test_ordering_before_must_be_lower if {
	mon := {"name": "mon", "priority": 200, "owner": {"uid": 0}, "application": "monitoring", "metadata": {}}
	inp := object.union(load_input, {"subject": root, "application": "firewall", "existing": [mon], "attach": {"iface": "eth0", "priority": 200}})
	denied_with(inp, "application \"firewall\" must run before \"monitoring\", but \"mon\" (\"monitoring\") is already at priority 200: use a priority below 200")
	ok := object.union(inp, {"attach": {"iface": "eth0", "priority": 199}})
	decide(ok).allow
}

test_ordering_after_must_not_be_lower if {
	fw := {"name": "fw", "priority": 100, "owner": {"uid": 0}, "application": "firewall", "metadata": {}}
	inp := object.union(load_input, {"subject": root, "application": "monitoring", "existing": [fw], "attach": {"iface": "eth0", "priority": 99}})
	denied_with(inp, "use a priority of 100 or above")
	tie := object.union(inp, {"attach": {"iface": "eth0", "priority": 100}})
	decide(tie).allow
}

test_forbidden_helper_for_group if {
	contractor := object.union(alice, {"groups": ["netops", "contractors"]})
	redirect := object.union(program, {"helpers": ["bpf_map_lookup_elem", "bpf_redirect_map"]})
	inp := object.union(load_input, {"subject": contractor, "program": redirect})
	denied_with(inp, "helper bpf_redirect_map is forbidden to group \"contractors\" (rule \"bpf_redirect*\")")
	decide(object.union(inp, {"subject": alice})).allow
}

test_forbidden_kfunc_for_group if {
	contractor := object.union(alice, {"groups": ["netops", "contractors"]})
	k := object.union(program, {"kfuncs": ["bpf_kfunc_call_test"]})
	denied_with(object.union(load_input, {"subject": contractor, "program": k}), "kfunc bpf_kfunc_call_test is forbidden")
}

test_license_not_allowed if {
	proprietary := object.union(program, {"license": "Proprietary"})
	denied_with(object.union(load_input, {"program": proprietary}), "licence \"Proprietary\" is not allowed (allowed: GPL, Dual BSD/GPL)")
}

test_license_missing if {
	denied_with(put(load_input, "program", object.remove(program, ["license"])), "licence \"\" is not allowed")
}

test_invalid_input_is_denied if {
	denied_with(put(load_input, "subject", {"uid": "0"}), "invalid input: subject.uid must be a number")
	denied_with(put(load_input, "subject", {"groups": []}), "the caller has no grant")
	denied_with(object.union(load_input, {"action": "format-disk"}), "action must be one of load, attach, detach, unload, pull, share (got \"format-disk\")")
	denied_with(put(load_input, "attach", {"iface": "eth0", "priority": "high"}), "attach.priority must be a number")
	denied_with(object.remove(load_input, ["program"]), "program facts are required")
}

test_malformed_data_falls_back_to_no_grants if {
	d := authz.decision with input as load_input
		with data.grants as "everyone"
		with data.root_allowed as "yes"
		with data.reserved_priorities as {}
		with data.ordering as 1
		with data.licenses as {"allowed": "GPL"}
	d.allow == false
	contains(d.reasons[0], "has no grant")
}

test_band_holders_formats_numbers_and_other_values if {
	authz.band_holders({"uids": [1, "x", true]}) == "uid \"1\", uid \"x\", uid \"true\""
}

test_patterns if {
	authz.matches("eth0", "eth0")
	authz.matches("*", "anything")
	authz.matches("bpf_redirect*", "bpf_redirect_map")
	authz.matches("*_map", "bpf_redirect_map")
	authz.matches("veth*peer", "veth0peer")
	not authz.matches("veth*peer", "vethpee")
	not authz.matches("ab*ba", "aba")
	not authz.matches("a*b*c", "abc")
	not authz.matches("eth*", "veth0")
}

# --- images: registries, repositories, signatures ---------------------------

image_grant := {"name": "images", "uids": [1001], "registries": ["registry.example.com"], "repositories": ["net/*"]}

pulled_image := {
	"reference": "registry.example.com/net/xdp:1", "registry": "registry.example.com", "repository": "net/xdp",
	"digest": "sha256:aa", "labels": {},
	"signature": {"verified": true, "key": "release.pub", "fingerprint": "ff", "reason": null},
}

image_load := object.union(load_input, {"image": pulled_image})

root_image_load := object.union(image_load, {"subject": root})

denied_by(inp, g, sigs, fragment) if {
	d := authz.decision with input as inp with data.grants as g with data.signatures as sigs
	d.allow == false
	some r in d.reasons
	contains(r, fragment)
}

test_grant_registry_and_repository_admit if {
	authz.decision.allow with input as object.union(image_load, {"subject": alice}) with data.grants as [image_grant]
}

test_grant_other_registry if {
	inp := object.union(image_load, {"subject": alice, "image": object.union(pulled_image, {"registry": "evil.example.org"})})
	denied_by(inp, [image_grant], [], "registry \"evil.example.org\" is not granted")
}

test_grant_other_repository if {
	inp := object.union(image_load, {"subject": alice, "image": object.union(pulled_image, {"repository": "other/xdp"})})
	denied_by(inp, [image_grant], [], "repository \"other/xdp\" is not granted")
}

test_grant_registries_limit_pull if {
	inp := {"subject": alice, "action": "pull", "image": object.union(pulled_image, {"registry": "evil.example.org"}), "program": {"image": "evil.example.org/net/xdp:1"}}
	denied_by(inp, [image_grant], [], "registry \"evil.example.org\" is not granted")
}

signing := [{"repositories": ["net/*"], "keys": ["release.pub"]}]

test_signed_by_listed_key_loads if {
	authz.decision.allow with input as root_image_load with data.signatures as signing
}

test_signed_by_fingerprint_loads if {
	authz.decision.allow with input as root_image_load with data.signatures as [{"keys": ["ff"]}]
}

test_unsigned_image_denied_for_root_too if {
	img := object.union(pulled_image, {"signature": {"verified": false, "key": null, "fingerprint": null, "reason": "the image has no cosign signature"}})
	denied_by(object.union(root_image_load, {"image": img}), [], signing, "must be signed by release.pub: the image has no cosign signature")
}

test_signed_by_other_listed_key_denied if {
	img := object.union(pulled_image, {"signature": {"verified": true, "key": "other.pub", "fingerprint": "ee", "reason": null}})
	denied_by(object.union(root_image_load, {"image": img}), [], signing, "it is signed by \"other.pub\", which this rule does not list")
}

test_signature_rule_covers_only_its_repositories if {
	img := object.union(pulled_image, {"repository": "tools/x", "signature": {"verified": false, "key": null, "fingerprint": null, "reason": "none"}})
	authz.decision.allow with input as object.union(root_image_load, {"image": img}) with data.signatures as signing
}

test_signature_rule_ignores_files if {
	authz.decision.allow with input as object.union(load_input, {"subject": root}) with data.signatures as [{"keys": ["release.pub"]}]
}

# --- everything a load runs: tail-call targets, shared maps -----------------

sneaky_target := {"name": "sneaky", "section": "xdp", "insn_count": 4, "helpers": ["bpf_redirect"], "kfuncs": []}

test_forbidden_helper_in_tail_call_target if {
	contractor := object.union(alice, {"groups": ["netops", "contractors"]})
	innocent := object.union(program, {"name": "innocent", "tail_calls": [sneaky_target]})
	inp := object.union(load_input, {"subject": contractor, "program": innocent})
	denied_with(inp, "tail-call target \"sneaky\" calls helper bpf_redirect, forbidden to group \"contractors\" (rule \"bpf_redirect*\")")
	decide(object.union(inp, {"subject": alice})).allow
}

test_forbidden_kfunc_in_tail_call_target if {
	contractor := object.union(alice, {"groups": ["netops", "contractors"]})
	target := object.union(sneaky_target, {"helpers": [], "kfuncs": ["bpf_kfunc_call_test"]})
	innocent := object.union(program, {"tail_calls": [target]})
	denied_with(object.union(load_input, {"subject": contractor, "program": innocent}), "calls kfunc bpf_kfunc_call_test")
}

bobs_maps := {"id": 42, "name": "xdp_count", "owner": {"uid": 1002, "username": "bob"}, "application": "billing", "maps": ["xdp_stats"]}

test_sharing_another_owners_maps_needs_manage_others if {
	inp := object.union(load_input, {"map_owner": bobs_maps})
	denied_with(inp, "the load shares the maps of program 42 (\"xdp_count\"), which belongs to uid 1002, and the grant does not allow managing others' programs (manage_others)")

	# a grant with manage_others allows it
	lead := object.union(alice, {"groups": ["netops", "leads"]})
	decide(object.union(inp, {"subject": lead})).allow
}

test_sharing_own_maps_needs_nothing_more if {
	own := object.union(bobs_maps, {"owner": {"uid": 1001, "username": "alice"}})
	decide(object.union(load_input, {"map_owner": own})).allow
}

# --- via: sudo, socket and tcp ------------------------------------------------

sudo_alice := object.union(alice, {"via": "sudo"})

sudo_root_data := [{"name": "socket-only", "groups": ["netops"], "via": ["socket"]}]

test_sudo_user_is_judged_as_themselves_not_root if {
	d := authz.decision with input as put(load_input, "subject", object.union(alice, {"groups": ["staff"], "via": "sudo"}))
	not d.allow
	some r in d.reasons
	contains(r, "uid 1001 (alice) has no grant")
}

test_sudo_user_granted_by_group if {
	decide(put(load_input, "subject", sudo_alice)).allow
}

test_grant_via_socket_only_refuses_sudo if {
	d := authz.decision with input as put(load_input, "subject", sudo_alice) with data.grants as sudo_root_data
	not d.allow
	some r in d.reasons
	contains(r, "requests via \"sudo\" are not granted (granted: socket)")
}

test_grant_via_socket_allows_socket if {
	authz.decision.allow with input as put(load_input, "subject", object.union(alice, {"via": "socket"})) with data.grants as sudo_root_data
}

tcp_caller := {"uid": -1, "gid": -1, "groups": [], "username": "anonymous", "pid": 0, "via": "tcp"}

test_tcp_caller_denied_by_default if {
	d := authz.decision with input as put(load_input, "subject", tcp_caller)
	not d.allow
	some r in d.reasons
	contains(r, "calls over TCP are anonymous")
}

test_tcp_caller_allowed_by_a_tcp_grant if {
	authz.decision.allow with input as put(load_input, "subject", tcp_caller) with data.grants as [{"name": "lab", "via": ["tcp"]}]
}

test_tcp_caller_not_matched_by_a_user_grant if {
	d := authz.decision with input as put(load_input, "subject", tcp_caller) with data.grants as [{"name": "anon", "users": ["anonymous"]}]
	not d.allow
	some r in d.reasons
	contains(r, "does not list \"tcp\"")
}

test_root_over_tcp_is_not_root if {
	not authz.decision.allow with input as put(load_input, "subject", object.union(tcp_caller, {"username": "root"}))
}
