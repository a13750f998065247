# Tests for site.rego (run by `cargo test -p medfed-policy`; `opa test policies/` runs them too).
package medfed.site_test

import rego.v1

import data.medfed.site

request := {
	"analysis": "sql",
	"tables": ["person", "condition_occurrence"],
	"columns": {"person": ["gender_concept_id", "person_id"], "condition_occurrence": ["condition_concept_id", "person_id"]},
}

study := {
	"id": "s1", "approval": "approved",
	"terms": {
		"analyses": ["sql"], "tables": ["person", "condition_occurrence"],
		"columns": ["person.gender_concept_id", "person.person_id"], "privacy": "exact",
	},
}

doc(s, r, hour) := {"study": s, "request": r, "now": {"hour_utc": hour}}

test_approved_study_within_its_terms_is_allowed if {
	d := site.decision with input as doc(study, request, 12)
	d.allow
	d.min_cell_count == 10
}

test_unapproved_study_is_refused if {
	d := site.decision with input as doc(object.union(study, {"approval": "pending"}), request, 12)
	not d.allow
	"this site's custodian has not approved the study" in d.reasons
}

test_tables_outside_the_study_are_refused if {
	r := object.union(request, {"tables": ["person", "death"]})
	d := site.decision with input as doc(study, r, 12)
	"table death is outside study s1's approved tables" in d.reasons
}

test_columns_outside_the_study_are_refused if {
	r := object.union(request, {"columns": {"person": ["year_of_birth"]}})
	d := site.decision with input as doc(study, r, 12)
	"column person.year_of_birth is outside study s1's approved columns" in d.reasons
}

test_free_text_never_leaves if {
	s := object.union(study, {"terms": object.union(study.terms, {"tables": ["note"]})})
	r := object.union(request, {"tables": ["note"], "columns": {}})
	d := site.decision with input as doc(s, r, 12)
	"table note does not leave this site" in d.reasons
}

test_analyses_outside_the_study_are_refused if {
	d := site.decision with input as doc(study, object.union(request, {"analysis": "glm"}), 12)
	"analysis glm is not one study s1 was approved for" in d.reasons
}

test_epsilon_above_the_cap_is_refused if {
	s := object.union(study, {"terms": object.union(study.terms, {"privacy": "dp", "epsilon": 3})})
	not site.allow with input as doc(s, request, 12)
}

test_blocked_studies_are_refused if {
	not site.allow with input as doc(study, request, 12) with site.blocked_studies as {"s1"}
}

test_hours_are_enforced if {
	not site.allow with input as doc(study, request, 3) with site.open_hours_utc as [8, 9, 10]
	site.allow with input as doc(study, request, 9) with site.open_hours_utc as [8, 9, 10]
}

test_a_dp_only_site_refuses_exact_studies if {
	s := object.union(study, {"terms": object.union(study.terms, {"privacy": "exact"})})
	d := site.decision with input as doc(s, request, 12) with site.allow_exact_studies as false
	"this site answers only differentially private studies; study s1 is exact" in d.reasons
	dp := object.union(study, {"terms": object.union(study.terms, {"privacy": "dp", "epsilon": 0.5})})
	site.allow with input as doc(dp, request, 12) with site.allow_exact_studies as false
}

test_a_site_may_require_secure_aggregation if {
	plain := object.union(request, {"secure_aggregation": false})
	d := site.decision with input as doc(study, plain, 12) with site.require_secure_aggregation as true
	"this site releases its partials only under secure aggregation; the request asked for a plain partial" in d.reasons
	secure := object.union(request, {"secure_aggregation": true})
	site.allow with input as doc(study, secure, 12) with site.require_secure_aggregation as true
	site.allow with input as doc(study, plain, 12)
}
