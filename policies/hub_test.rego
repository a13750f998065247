# Tests for hub.rego (run by `cargo test -p medfed-policy`; `opa test policies/` runs them too).
package medfed.hub_test

import rego.v1

import data.medfed.hub

study := {
	"id": "s1", "proposer": "rita", "members": ["carl"], "sites": ["north", "south"],
	"approvals": {"north": "approved", "south": "pending"},
}

subject(id, roles, sites) := {"id": id, "roles": roles, "sites": sites}

test_proposer_may_query_an_approved_study if {
	hub.allow with input as {"action": "query", "subject": subject("rita", ["researcher"], []), "study": study}
}

test_member_may_query if {
	hub.allow with input as {"action": "query", "subject": subject("carl", ["clinician"], []), "study": study}
}

test_outsider_may_not_query if {
	d := hub.decision with input as {"action": "query", "subject": subject("eve", ["researcher"], []), "study": study}
	not d.allow
	"eve is not a member of study s1" in d.reasons
}

test_no_query_before_any_approval if {
	pending := object.union(study, {"approvals": {"north": "pending", "south": "rejected"}})
	d := hub.decision with input as {"action": "query", "subject": subject("rita", ["researcher"], []), "study": pending}
	not d.allow
	"no site has approved study s1 yet" in d.reasons
}

test_auditor_may_not_query if {
	not hub.allow with input as {"action": "query", "subject": subject("rita", ["auditor"], []), "study": study}
}

test_researcher_may_not_approve if {
	not hub.allow with input as {"action": "study.decide", "site": "north", "subject": subject("rita", ["researcher"], []), "study": study}
}

test_custodian_approves_only_their_site if {
	hub.allow with input as {"action": "study.decide", "site": "north", "subject": subject("nora", ["custodian"], ["north"]), "study": study}
	d := hub.decision with input as {"action": "study.decide", "site": "south", "subject": subject("nora", ["custodian"], ["north"]), "study": study}
	not d.allow
	"nora is not the custodian of site south" in d.reasons
}

test_custodian_cannot_approve_a_site_the_study_does_not_ask_for if {
	not hub.allow with input as {"action": "study.decide", "site": "east", "subject": subject("ed", ["custodian"], ["east"]), "study": study}
}

test_only_auditors_read_the_trail if {
	hub.allow with input as {"action": "audit.read", "subject": subject("al", ["auditor"], [])}
	not hub.allow with input as {"action": "audit.read", "subject": subject("ad", ["admin"], [])}
	not hub.allow with input as {"action": "audit.read", "subject": subject("rita", ["researcher"], [])}
}

test_only_admins_manage_users if {
	hub.allow with input as {"action": "user.manage", "subject": subject("ad", ["admin"], [])}
	not hub.allow with input as {"action": "user.manage", "subject": subject("al", ["auditor"], [])}
}

test_unknown_actions_are_denied if {
	not hub.allow with input as {"action": "audit.delete", "subject": subject("ad", ["admin", "auditor"], [])}
}
