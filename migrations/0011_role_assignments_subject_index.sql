-- authz 0011: drop role_assignments_subject_idx, which repeated the start of
-- role_assignments_unique.
--
-- role_assignments_subject_idx was (subject_type, subject_id); the unique
-- constraint's index is (subject_type, subject_id, role_id, scope_type,
-- scope_id), so every lookup by subject can use it as well. The second index
-- only cost upkeep: one more index entry for every assignment written, which a
-- bulk import (authz import) pays hundreds of thousands of times.

drop index role_assignments_subject_idx;
