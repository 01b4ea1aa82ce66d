package bpfd.share_test

import rego.v1

import data.bpfd.authz

# Rules for action "share" (bpfd bpffs share): who may pin which maps into an
# application's bpffs, where, and with which mode.

grants := [
	{
		"name": "app-admins",
		"groups": ["appadm"],
		"actions": ["share"],
		"program_types": ["xdp"],
		"share_paths": ["/run/apps/*"],
		"share_modes": ["0440", "0660"],
	},
	{"name": "loaders", "groups": ["loaders"], "actions": ["load"]},
]

carol := {"uid": 1002, "gid": 1002, "groups": ["appadm"], "username": "carol", "pid": 11, "via": "cli"}

root := {"uid": 0, "gid": 0, "groups": ["root"], "username": "root", "pid": 1, "via": "cli"}

program := {
	"name": "xdp_gate", "type": "xdp", "section": "xdp", "license": "GPL",
	"sha256": "00", "insn_count": 20, "helpers": ["bpf_map_lookup_elem"], "kfuncs": [], "maps": [],
}

share := {"path": "/run/apps/web", "owner": {"uid": 2000, "gid": 2000}, "mode": "0660", "maps": null, "mount_application": "web"}

program_share := {
	"subject": carol, "action": "share", "program": program, "owner": {"uid": 1002, "username": "carol"},
	"application": "web", "metadata": {}, "share": share,
}

application_share := {"subject": carol, "action": "share", "application": "web", "metadata": {}, "share": share}

decide(inp) := d if {
	d := authz.decision with input as inp with data.grants as grants
}

put(obj, key, value) := object.union(object.remove(obj, [key]), {key: value})

denied_with(inp, fragment) if {
	d := decide(inp)
	d.allow == false
	some r in d.reasons
	contains(r, fragment)
}

test_root_may_share_by_default if {
	d := authz.decision with input as put(program_share, "subject", root)
	d == {"allow": true, "reasons": ["uid 0 (root) is allowed by default"]}
}

test_granted_program_share_is_allowed if {
	d := decide(program_share)
	d == {"allow": true, "reasons": ["allowed by grant \"app-admins\""]}
}

test_application_share_names_no_program_type if {
	d := decide(application_share)
	d.allow == true
}

test_share_outside_granted_paths_is_denied if {
	inp := put(program_share, "share", object.union(share, {"path": "/srv/web"}))
	denied_with(inp, "sharing into \"/srv/web\" is not granted (granted: /run/apps/*)")
}

test_share_mode_not_granted_is_denied if {
	inp := put(program_share, "share", object.union(share, {"mode": "0666"}))
	denied_with(inp, "share mode \"0666\" is not granted (granted: 0440, 0660)")
}

test_share_needs_a_grant_with_the_action if {
	loader := object.union(carol, {"groups": ["loaders"]})
	denied_with(put(program_share, "subject", loader), "action \"share\" is not granted (granted: load)")
}

test_sharing_anothers_program_needs_manage_others if {
	inp := put(program_share, "owner", {"uid": 1001, "username": "alice"})
	denied_with(inp, "the program belongs to uid 1001")
}

test_share_of_other_program_type_is_denied if {
	inp := put(program_share, "program", object.union(program, {"type": "tc"}))
	denied_with(inp, "program type \"tc\" is not granted")
}

test_share_without_path_is_invalid if {
	inp := put(application_share, "share", {"owner": {"uid": 2000, "gid": 2000}, "mode": "0660"})
	denied_with(inp, "invalid input: share.path must be a string")
}

test_share_without_owner_is_invalid if {
	inp := put(application_share, "share", {"path": "/run/apps/web", "mode": "0660"})
	denied_with(inp, "invalid input: share.owner.uid must be a number")
}
