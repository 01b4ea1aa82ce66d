# METADATA
# title: bpfd authorization
# description: |
#   Decides every mutating bpfd request (load, attach, detach, unload, pull).
#   The rules are fixed here; what they allow comes from the data document that
#   administrators edit (BPFD_POLICY_DATA, default /etc/bpfd/policy-data.json),
#   so changing who may do what never needs a recompile. policies/README.md
#   documents the input, the data document and the output.
package bpfd.authz

# Redundant for OPA 1.x; lets regal releases built on OPA 0.x parse the file.
import rego.v1

# METADATA
# description: The entrypoint bpfd evaluates. Anything other than this shape is a deny.
# entrypoint: true
decision := {"allow": allow, "reasons": reasons}

default allow := false

# Constraints (reserved bands, ordering, helpers, licences) bind everyone,
# root included: in a daemonless tool most callers are root, and rules that
# exempted root would protect nothing.
allow if {
	count(deny) == 0
	permitted
}

reasons := sorted_reasons if {
	allow
	sorted_reasons := sort(allowed_because)
} else := sort(deny | missing_permission)

# --- data document, with defaults for an empty or absent one -------------

default root_allowed := true

root_allowed := data.root_allowed if is_boolean(data.root_allowed)

default grants := []

grants := data.grants if is_array(data.grants)

default reserved_bands := []

reserved_bands := data.reserved_priorities if is_array(data.reserved_priorities)

default ordering_rules := []

ordering_rules := data.ordering if is_array(data.ordering)

default allowed_licenses := null

allowed_licenses := data.licenses.allowed if is_array(data.licenses.allowed)

# --- who may act at all ---------------------------------------------------

is_root if {
	input.subject.uid == 0
	root_allowed
}

permitted if is_root

permitted if count(passing_grants) > 0

allowed_because contains "uid 0 (root) is allowed by default" if is_root

allowed_because contains concat("", ["allowed by grant ", quote(grant_name(i))]) if some i in passing_grants

default subject_label := "the caller"

subject_label := concat("", ["uid ", format_int(input.subject.uid, 10), " (", username, ")"]) if {
	valid_uid
	username := object.get(input.subject, "username", "unknown")
	is_string(username)
}

missing_permission contains msg if {
	not is_root
	count(matching_grants) == 0
	msg := concat("", [
		subject_label,
		" has no grant in the policy data; an administrator can add one to ",
		"the \"grants\" list of the data document (BPFD_POLICY_DATA)",
	])
}

missing_permission contains msg if {
	not is_root
	count(passing_grants) == 0
	some [i, problem] in grant_problems
	msg := concat("", ["grant ", quote(grant_name(i)), ": ", problem])
}

missing_permission contains msg if {
	input.subject.via == "tcp"
	count(matching_grants) == 0
	msg := concat("", [
		"calls over TCP are anonymous: an administrator can allow them with a grant ",
		"whose \"via\" lists \"tcp\" in the data document (BPFD_POLICY_DATA)",
	])
}

matching_grants contains i if {
	some i, g in grants
	grant_names_subject(g)
}

passing_grants contains i if {
	some i in matching_grants
	not grant_has_problem(i)
}

# Undefined input fields make a negated expression undefined rather than true,
# so each negated test goes through a rule of its own.
action_granted(i) if input.action in grants[i].actions

type_granted(i) if input.program.type in grants[i].program_types

grant_has_problem(i) if {
	some [j, _] in grant_problems
	j == i
}

grant_names_subject(g) if input.subject.uid in g.uids

grant_names_subject(g) if input.subject.username in g.users

grant_names_subject(g) if {
	some group in input.subject.groups
	group in g.groups
}

# Callers over TCP are anonymous: nothing proves a uid, a name or a group, so
# only a grant that lists "tcp" in "via" applies to them.
grant_names_subject(g) if {
	input.subject.via == "tcp"
	"tcp" in g.via
}

grant_name(i) := grants[i].name if is_string(grants[i].name)

else := concat("", ["#", format_int(i, 10)])

# What a matching grant does not cover. A grant that leaves a field out does
# not restrict it; a grant without "actions" allows every action.
grant_problems contains [i, msg] if {
	some i in matching_grants
	is_array(grants[i].actions)
	not action_granted(i)
	msg := concat("", ["action ", quote(input.action), " is not granted (granted: ", list(grants[i].actions), ")"])
}

# Conditions that do not depend on the grant come before the loop over grants.
grant_problems contains [i, msg] if {
	judges_program_type
	some i in matching_grants
	is_array(grants[i].program_types)
	not type_granted(i)
	msg := concat("", [
		"program type ", quote(program_type),
		" is not granted (granted: ", list(grants[i].program_types), ")",
	])
}

grant_problems contains [i, msg] if {
	some i in matching_grants
	is_array(grants[i].interfaces)
	iface := input.attach.iface
	not matches_any(grants[i].interfaces, iface)
	msg := concat("", ["interface ", quote(iface), " is not granted (granted: ", list(grants[i].interfaces), ")"])
}

grant_problems contains [i, msg] if {
	some i in matching_grants
	granted := grants[i].priority
	p := input.attach.priority
	not in_range(p, granted)
	msg := concat("", ["priority ", format_int(p, 10), " is outside the granted range ", range_text(granted)])
}

grant_problems contains [i, msg] if {
	some i in matching_grants
	limit := grants[i].max_insns
	input.program.insn_count > limit
	msg := concat("", [
		"program has ", format_int(input.program.insn_count, 10),
		" instructions, the grant allows at most ", format_int(limit, 10),
	])
}

grant_problems contains [i, msg] if {
	input.action == "pull"
	some i in matching_grants
	is_array(grants[i].images)
	image := object.get(input, ["program", "image"], "")
	not matches_any(grants[i].images, image)
	msg := concat("", ["image ", quote(image), " is not granted (granted: ", list(grants[i].images), ")"])
}

# Acting on a program someone else loaded needs "manage_others".
grant_problems contains [i, msg] if {
	acts_on_loaded
	input.owner.uid != input.subject.uid
	some i in matching_grants
	not grants[i].manage_others == true
	msg := concat("", [
		"the program belongs to uid ", format_int(input.owner.uid, 10),
		" and the grant does not allow managing others' programs (manage_others)",
	])
}

# Sharing the maps of a program someone else loaded (--map-owner-id) reads and
# writes their maps, prog arrays included, so it steers their programs too: it
# needs "manage_others", like acting on their program.
grant_problems contains [i, msg] if {
	input.action == "load"
	is_object(input.map_owner)
	input.map_owner.owner.uid != input.subject.uid
	some i in matching_grants
	not grants[i].manage_others == true
	msg := concat("", [
		"the load shares the maps of program ", format_int(input.map_owner.id, 10),
		" (", quote(input.map_owner.name), "), which belongs to uid ", format_int(input.map_owner.owner.uid, 10),
		", and the grant does not allow managing others' programs (manage_others)",
	])
}

# --- constraints for everyone ----------------------------------------------

deny contains msg if {
	some problem in input_problems
	msg := concat("", ["invalid input: ", problem])
}

# A band of priorities reserved for named applications, users or groups.
deny contains msg if {
	attaching
	some band in reserved_bands
	in_range(input.attach.priority, band)
	not band_admits(band)
	msg := concat("", [
		"priority ", format_int(input.attach.priority, 10), " is in the band ",
		range_text(band), " reserved for ", band_holders(band),
		band_note(band),
	])
}

# "Programs of application A run before those of B": lower priority runs
# first and ties keep attach order, so a newcomer at equal priority runs after
# what is already there.
deny contains msg if {
	attaching
	some rule in ordering_rules
	input.application == rule.before
	some e in input.existing
	e.application == rule.after
	not input.attach.priority < e.priority
	msg := concat("", [
		"application ", quote(rule.before), " must run before ", quote(rule.after),
		", but ", quote(e.name), " (", quote(rule.after), ") is already at priority ",
		format_int(e.priority, 10), ": use a priority below ", format_int(e.priority, 10),
	])
}

deny contains msg if {
	attaching
	some rule in ordering_rules
	input.application == rule.after
	some e in input.existing
	e.application == rule.before
	input.attach.priority < e.priority
	msg := concat("", [
		"application ", quote(rule.before), " must run before ", quote(rule.after),
		", but ", quote(e.name), " (", quote(rule.before), ") is at priority ",
		format_int(e.priority, 10), ": use a priority of ", format_int(e.priority, 10), " or above",
	])
}

# Helpers and kfuncs forbidden to members of a group, e.g. no bpf_redirect*.
deny contains msg if {
	loads_code
	some kind in ["helpers", "kfuncs"]
	some group in input.subject.groups
	some pattern in data.forbidden[kind][group]
	some name in object.get(input, ["program", kind], [])
	matches(pattern, name)
	msg := concat("", [
		trim_suffix(kind, "s"), " ", name, " is forbidden to group ", quote(group),
		" (rule ", quote(pattern), ")",
	])
}

# The same rule for each tail-call target the load brings along: its code runs
# in the same context, so a helper it calls is as good as called by the program.
deny contains msg if {
	loads_code
	some kind in ["helpers", "kfuncs"]
	some group in input.subject.groups
	some pattern in data.forbidden[kind][group]
	some target in object.get(input, ["program", "tail_calls"], [])
	some name in object.get(target, kind, [])
	matches(pattern, name)
	msg := concat("", [
		"tail-call target ", quote(target.name), " calls ", trim_suffix(kind, "s"), " ", name,
		", forbidden to group ", quote(group), " (rule ", quote(pattern), ")",
	])
}

deny contains msg if {
	input.action == "load"
	is_array(allowed_licenses)
	license := object.get(input, ["program", "license"], "")
	not license in allowed_licenses
	msg := concat("", ["licence ", quote(license), " is not allowed (allowed: ", list(allowed_licenses), ")"])
}

# --- helpers ----------------------------------------------------------------

attaching if {
	loads_code
	is_number(input.attach.priority)
}

# Rules rather than `in {"load", "attach"}`: a set literal is built anew on every evaluation.
loads_code if input.action == "load"

loads_code if input.action == "attach"

acts_on_loaded if input.action == "attach"

acts_on_loaded if input.action == "detach"

acts_on_loaded if input.action == "unload"

# Sharing one program's maps acts on that program; sharing an application's
# maps names no program, and input.owner is absent.
acts_on_loaded if input.action == "share"

# A share of an application's maps names no program, so it has no type to judge.
judges_program_type if {
	input.action != "pull"
	input.action != "share"
}

judges_program_type if {
	input.action == "share"
	input.program
}

default program_type := "unknown"

program_type := input.program.type if is_string(input.program.type)

in_range(p, range) if {
	p >= object.get(range, "min", 0)
	p <= object.get(range, "max", 1000)
}

range_text(range) := concat("", [
	format_int(object.get(range, "min", 0), 10), "..",
	format_int(object.get(range, "max", 1000), 10),
])

matches_any(patterns, name) if {
	some pattern in patterns
	matches(pattern, name)
}

# A pattern is a name, or a name with one "*" standing for any run of
# characters ("bpf_redirect*", "veth*", "*"). Not glob.match: its wasm
# implementation costs milliseconds to compile on first use, which a one-shot
# `bpfd load` pays every time.
matches(pattern, name) if pattern == name

matches(pattern, name) if {
	parts := split(pattern, "*")
	count(parts) == 2
	startswith(name, parts[0])
	endswith(name, parts[1])
	count(name) >= count(parts[0]) + count(parts[1])
}

quote(s) := concat("", ["\"", s, "\""])

to_text(v) := v if is_string(v)

else := format_int(v, 10) if is_number(v)

else := json.marshal(v)

list(xs) := concat(", ", [to_text(x) | some x in xs])

# --- input validation ---------------------------------------------------------

input_problems contains "subject.uid must be a number" if not valid_uid

input_problems contains msg if {
	not valid_action
	msg := concat("", [
		"action must be one of load, attach, detach, unload, pull, share (got ",
		json.marshal(object.get(input, "action", null)), ")",
	])
}

input_problems contains "attach.priority must be a number" if {
	input.attach
	not valid_priority
}

input_problems contains "program facts are required to load or attach" if {
	loads_code
	not has_program
}

input_problems contains "share.path must be a string" if {
	input.action == "share"
	not valid_share_path
}

input_problems contains "share.owner.uid must be a number" if {
	input.action == "share"
	not valid_share_owner
}

valid_uid if is_number(input.subject.uid)

valid_action if loads_code

valid_action if acts_on_loaded

valid_action if input.action == "pull"

valid_action if input.action == "share"

valid_priority if is_number(input.attach.priority)

has_program if is_object(input.program)

valid_share_path if is_string(input.share.path)

valid_share_owner if is_number(input.share.owner.uid)

# --- reserved bands --------------------------------------------------------

band_admits(band) if input.application in band.applications

band_admits(band) if input.subject.uid in band.uids

band_admits(band) if {
	some group in input.subject.groups
	group in band.groups
}

band_holders(band) := concat(", ", [h |
	some kind in ["applications", "groups", "uids"]
	some v in object.get(band, kind, [])
	h := concat("", [trim_suffix(kind, "s"), " ", quote(to_text(v))])
])

band_note(band) := concat("", [" (", band.description, ")"]) if is_string(band.description)

else := ""
